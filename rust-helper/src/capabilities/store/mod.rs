//! The store a container sees.

pub mod view;
