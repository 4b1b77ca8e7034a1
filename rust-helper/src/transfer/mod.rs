//! The export format that `export`, `import` and `move` share
//! (docs/export-format.md): the framed stream with its closing digest
//! (archive.rs), the digest itself (sha256.rs), and a container's own files
//! in it as tar with owners relative to its id range (file_tree.rs).

pub mod archive;
pub mod file_tree;
pub mod sha256;
