//! The export stream: one container as a file (`export`), read back by
//! `import`; docs/export-format.md describes it for other readers.
//!
//! A first line names the format and its version; then frames of up to 1
//! MiB, each a kind byte, a big-endian u32 length and that many bytes. The
//! frames of one section follow each other, the sections in this order:
//! the header (JSON), the store paths (`nix-store --export`), the writable
//! root and the data directory (each a tar stream, file_tree.rs); a section
//! may have no frame. The last frame holds the SHA-256 of every byte before
//! it, and nothing follows it: a file cut short, or with a byte changed, is
//! refused when its end is read, and `import` changes nothing before that.

use std::io::{BufRead, Read, Write};

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::ids::IdMap;
use crate::nix::store_paths::StorePath;
use crate::spec::{NixosRelease, Params, Source, Spec};
use crate::transfer::sha256::Sha256;

/// The first line: what the file is, and the version of its format.
const MAGIC: &str = "nixcloud-container export ";
/// The version this helper writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The most bytes one frame carries.
pub const FRAME_SIZE: usize = 1 << 20;
/// The most bytes written at a time, into the export or into a file of
/// the container: writes of a whole frame (1 MiB) into the page cache took
/// up to twice as long here as writes of 64 KiB (bench/, section 10;
/// docs/performance.md, finding 12).
pub const WRITE_SIZE: usize = 64 << 10;
/// The most bytes the header may have (its JSON).
const HEADER_LIMIT: usize = 64 << 20;

/// What an export says of its container, before its content: enough to
/// check it against this host (import --plan) before anything is read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Header {
    /// The container's name where it was exported.
    pub name: String,
    /// When it was exported (RFC 3339).
    pub exported: String,
    /// Whether it ran while its files were copied (export --running).
    pub running: bool,
    /// Its id range where it was exported: the ids in the tar streams are
    /// relative to it.
    pub ids: IdMap,
    /// Its address allocated on the hostonly bridge, if it had one.
    pub automatic_ip: Option<Ipv4Addr>,
    pub state_version: Option<NixosRelease>,
    /// What `update` without a file builds it from.
    pub source: Source,
    /// Whether it starts with the host, where root decided (--autostart).
    pub autostart: Option<bool>,
    /// Root's own LXC settings for it (--lxc-config) there, as text: never
    /// applied by an import (root gives them again on the new host).
    pub root_settings: Option<String>,
    /// The number of the current generation.
    pub current: u64,
    pub generations: Vec<ExportedGeneration>,
    /// Every store path the generations' systems need, each after those it
    /// refers to.
    pub store_paths: Vec<StorePath>,
    /// Those of them the store section carries, in its order.
    pub included: Vec<StorePath>,
    /// Whether it had a data directory (the data section).
    pub data: bool,
}

/// One generation as exported: what it was built from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportedGeneration {
    pub number: u64,
    /// When it was made (seconds since 1970).
    pub created: i64,
    /// The guest's system.
    pub system: StorePath,
    pub spec: Spec,
    /// What it was built with there (its name, address, ids).
    pub params: Params,
}

impl Header {
    /// Where the current generation is in `generations` (`check` made sure
    /// it is there).
    pub fn current_index(&self) -> usize {
        self.generations
            .iter()
            .position(|generation| generation.number == self.current)
            .expect("Header::check found the current generation")
    }

    /// Fails unless the generations are numbered as nix-env numbers them,
    /// the current one among them, and each system among the store paths.
    pub fn check(&self) -> Result<()> {
        let mut numbers = BTreeSet::new();
        for generation in &self.generations {
            if generation.number == 0
                || generation.number > u64::from(u32::MAX)
                || !numbers.insert(generation.number)
            {
                bail!("the export is damaged: generation {} is not a generation number, or comes twice", generation.number);
            }
            if !self.store_paths.contains(&generation.system) {
                bail!("the export is damaged: the system of generation {} is not among its store paths", generation.number);
            }
        }
        if !numbers.contains(&self.current) {
            bail!(
                "the export is damaged: its current generation {} is not among its generations",
                self.current
            );
        }
        let needed: BTreeSet<&StorePath> = self.store_paths.iter().collect();
        if let Some(extra) = self.included.iter().find(|path| !needed.contains(path)) {
            bail!("the export is damaged: it carries {extra}, which its generations do not need");
        }
        Ok(())
    }
}

/// The sections, in the order they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Header,
    StorePaths,
    Root,
    Data,
    End,
}

impl Section {
    fn byte(self) -> u8 {
        match self {
            Section::Header => b'H',
            Section::StorePaths => b'S',
            Section::Root => b'R',
            Section::Data => b'D',
            Section::End => b'E',
        }
    }

    fn from_byte(byte: u8) -> Option<Section> {
        [Section::Header, Section::StorePaths, Section::Root, Section::Data, Section::End]
            .into_iter()
            .find(|section| section.byte() == byte)
    }
}

/// SHA-256 of buffers handed over in order, computed in a thread of its
/// own, so that hashing goes on while the next frame is read or written;
/// the buffers come back for the frames after.
struct Digesting {
    to_hash: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<[u8; 32]>>,
    /// Buffers made so far: at most `BUFFERS`, used again and again (a new
    /// one for every frame would cost a mapping and its page faults).
    made: usize,
}

/// Frames queued for hashing at most.
const QUEUED: usize = 4;
/// Buffers in use at most: those queued, the one being hashed, the one
/// being filled and one in between.
const BUFFERS: usize = QUEUED + 3;

impl Digesting {
    fn new() -> Digesting {
        // A few frames ahead at most: a slow hash holds the stream up
        // rather than the memory growing.
        let (to_hash, queued) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUED);
        let (give_back, spare) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for buffer in queued {
                hasher.update(&buffer);
                let _ = give_back.send(buffer);
            }
            hasher.finish()
        });
        Digesting { to_hash: Some(to_hash), spare, thread: Some(thread), made: 0 }
    }

    fn hash(&mut self, buffer: Vec<u8>) {
        if let Some(to_hash) = &self.to_hash {
            // The thread only stops when this ends.
            let _ = to_hash.send(buffer);
        }
    }

    /// An empty buffer for a frame: one the thread is done with, a new one
    /// while fewer than `BUFFERS` were made, else the next the thread gives
    /// back.
    fn buffer(&mut self) -> Vec<u8> {
        let mut buffer = match self.spare.try_recv() {
            Ok(buffer) => buffer,
            Err(_) if self.made < BUFFERS => {
                self.made += 1;
                Vec::with_capacity(HEAD + FRAME_SIZE)
            }
            Err(_) => self.spare.recv().expect("the hashing thread runs while buffers are out"),
        };
        buffer.clear();
        buffer
    }

    fn finish(mut self) -> [u8; 32] {
        self.to_hash = None;
        self.thread.take().expect("finished once").join().expect("hashing does not panic")
    }
}

impl Drop for Digesting {
    fn drop(&mut self) {
        self.to_hash = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A frame's head: its kind and its length.
const HEAD: usize = 5;

/// Writes an export: the header's JSON, then `start` for each later
/// section and its content, then `finish`.
pub struct Writer<W: Write> {
    out: W,
    digesting: Option<Digesting>,
    /// The frame being filled: its head, then its content.
    frame: Vec<u8>,
    section: Section,
    written: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W) -> Result<Writer<W>> {
        let first = format!("{MAGIC}{FORMAT_VERSION}\n");
        out.write_all(first.as_bytes()).context("cannot write the export")?;
        let mut digesting = Digesting::new();
        digesting.hash(first.clone().into_bytes());
        let mut frame = digesting.buffer();
        frame.extend_from_slice(&[0; HEAD]);
        Ok(Writer {
            out,
            digesting: Some(digesting),
            frame,
            section: Section::Header,
            written: first.len() as u64,
        })
    }

    fn digesting(&mut self) -> &mut Digesting {
        self.digesting.as_mut().expect("a writer is finished once")
    }

    /// Starts `section` (none before it may come after it); what is written
    /// from here on is its content.
    pub fn start(&mut self, section: Section) -> Result<()> {
        assert!(section >= self.section && section != Section::End, "sections go in order");
        self.flush_frame()?;
        self.section = section;
        Ok(())
    }

    fn flush_frame(&mut self) -> Result<()> {
        let length = self.frame.len() - HEAD;
        if length == 0 {
            return Ok(());
        }
        self.frame[0] = self.section.byte();
        let length = u32::try_from(length).expect("a frame is at most FRAME_SIZE");
        self.frame[1..HEAD].copy_from_slice(&length.to_be_bytes());
        for piece in self.frame.chunks(WRITE_SIZE) {
            self.out.write_all(piece).context("cannot write the export")?;
        }
        self.written += self.frame.len() as u64;
        let mut next = self.digesting().buffer();
        next.extend_from_slice(&[0; HEAD]);
        let full = std::mem::replace(&mut self.frame, next);
        self.digesting().hash(full);
        Ok(())
    }

    /// Writes the last frame (the digest) and returns the digest and the
    /// bytes written.
    pub fn finish(mut self) -> Result<([u8; 32], u64)> {
        self.flush_frame()?;
        let digest = self.digesting.take().expect("a writer is finished once").finish();
        let mut end = [0u8; HEAD + 32];
        end[0] = Section::End.byte();
        end[1..HEAD].copy_from_slice(&32u32.to_be_bytes());
        end[HEAD..].copy_from_slice(&digest);
        self.out
            .write_all(&end)
            .and_then(|()| self.out.flush())
            .context("cannot write the export")?;
        Ok((digest, self.written + end.len() as u64))
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = HEAD + FRAME_SIZE - self.frame.len();
        let taken = room.min(data.len());
        self.frame.extend_from_slice(&data[..taken]);
        if self.frame.len() == HEAD + FRAME_SIZE {
            self.flush_frame().map_err(std::io::Error::other)?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads an export, section by section (`start`, then `Read` or
/// `BufRead`); `finish` checks its digest. Each frame is read whole before
/// any of it is handed out.
pub struct Reader<R: Read> {
    input: R,
    digesting: Option<Digesting>,
    /// The frame read last, head and content (empty before the first).
    frame: Vec<u8>,
    /// How much of it was handed out, from HEAD on.
    position: usize,
    /// Its section (the latest section seen).
    section: Section,
    /// Whether the end frame's head was read; its digest follows.
    at_end: bool,
    /// The section `Read` reads from now.
    reading: Section,
}

impl<R: Read> Reader<R> {
    /// Reads the first line; fails unless it is an export of a version this
    /// helper reads.
    pub fn new(mut input: R) -> Result<Reader<R>> {
        let mut first = vec![0u8; MAGIC.len()];
        let read = input.read_exact(&mut first);
        if read.is_err() || first != MAGIC.as_bytes() {
            bail!("this is not an export of nixcloud-container (it does not start with {MAGIC:?})");
        }
        let mut byte = [0u8; 1];
        while first.last() != Some(&b'\n') && first.len() < MAGIC.len() + 11 {
            read_exactly(&mut input, &mut byte)?;
            first.push(byte[0]);
        }
        let version = String::from_utf8_lossy(&first[MAGIC.len()..]).trim_end().to_string();
        if first.last() != Some(&b'\n') || version != FORMAT_VERSION.to_string() {
            bail!(
                "the export has format version {}, this helper reads version {FORMAT_VERSION}",
                crate::formats::show(&version)
            );
        }
        let mut digesting = Digesting::new();
        digesting.hash(first);
        Ok(Reader {
            input,
            digesting: Some(digesting),
            frame: Vec::new(),
            position: 0,
            section: Section::Header,
            at_end: false,
            reading: Section::Header,
        })
    }

    fn digesting(&mut self) -> &mut Digesting {
        self.digesting.as_mut().expect("a reader is finished once")
    }

    /// Whether the frame read last is all handed out (or there is none).
    fn exhausted(&self) -> bool {
        self.position >= self.frame.len()
    }

    /// Reads the next frame whole, the one before being all handed out;
    /// the end frame's head only.
    fn next_frame(&mut self) -> Result<()> {
        debug_assert!(self.exhausted() && !self.at_end);
        let done = std::mem::take(&mut self.frame);
        if !done.is_empty() {
            self.digesting().hash(done);
        }
        let mut head = [0u8; HEAD];
        read_exactly(&mut self.input, &mut head)?;
        let Some(section) = Section::from_byte(head[0]) else {
            bail!("the export is damaged: a frame of unknown kind {}", head[0]);
        };
        let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if section < self.section {
            bail!("the export is damaged: its sections are out of order");
        }
        if length > FRAME_SIZE || (section == Section::End && length != 32) {
            bail!("the export is damaged: a frame of {length} bytes");
        }
        self.section = section;
        if section == Section::End {
            self.at_end = true;
            return Ok(());
        }
        let mut frame = self.digesting().buffer();
        frame.extend_from_slice(&head);
        frame.resize(HEAD + length, 0);
        read_exactly(&mut self.input, &mut frame[HEAD..])?;
        self.frame = frame;
        self.position = HEAD;
        Ok(())
    }

    /// The content of section `reading` that is read and not yet handed
    /// out: empty at the section's end.
    fn available(&mut self) -> Result<&[u8]> {
        while self.exhausted() && !self.at_end {
            self.next_frame()?;
        }
        if self.at_end || self.section != self.reading {
            return Ok(&[]);
        }
        Ok(&self.frame[self.position..])
    }

    /// Makes `Read` read section `section` (which must come later than the
    /// one read so far): what is left of an earlier one is an error.
    pub fn start(&mut self, section: Section) -> Result<()> {
        assert!(section >= self.reading, "sections are read in order");
        if section != self.reading && !self.available()?.is_empty() {
            bail!("the export is damaged: a section is longer than its content");
        }
        self.reading = section;
        Ok(())
    }

    /// The header's JSON.
    pub fn header_bytes(&mut self) -> Result<Vec<u8>> {
        self.start(Section::Header)?;
        let mut bytes = Vec::new();
        self.by_ref().take(HEADER_LIMIT as u64 + 1).read_to_end(&mut bytes)?;
        if bytes.len() > HEADER_LIMIT {
            bail!("the export is damaged: its header is larger than {HEADER_LIMIT} bytes");
        }
        Ok(bytes)
    }

    /// Reads the last frame and checks the digest: fails unless every byte
    /// before it is as written, and nothing follows it. Returns the digest.
    pub fn finish(mut self) -> Result<[u8; 32]> {
        self.reading = Section::End;
        if !self.available()?.is_empty() || !self.at_end {
            bail!("the export is damaged: a section is longer than its content");
        }
        let done = std::mem::take(&mut self.frame);
        if !done.is_empty() {
            self.digesting().hash(done);
        }
        let mut recorded = [0u8; 32];
        read_exactly(&mut self.input, &mut recorded)?;
        let mut more = [0u8; 1];
        if self.input.read(&mut more).context("cannot read the export")? != 0 {
            bail!("the export is damaged: something follows its end");
        }
        let computed = self.digesting.take().expect("a reader is finished once").finish();
        if recorded != computed {
            bail!("the export is damaged: its content does not match its digest");
        }
        Ok(computed)
    }
}

impl<R: Read> Read for Reader<R> {
    /// The content of the section `start` named; end of file at its end.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl<R: Read> BufRead for Reader<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.available().map_err(std::io::Error::other)
    }

    fn consume(&mut self, amount: usize) {
        self.position += amount;
    }
}

fn cut_short() -> anyhow::Error {
    anyhow::anyhow!("the export is damaged: it ends too early (cut short?)")
}

fn read_exactly(input: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    input.read_exact(buf).map_err(|err| {
        if err.kind() == std::io::ErrorKind::UnexpectedEof {
            cut_short()
        } else {
            anyhow::Error::new(err).context("cannot read the export")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(root: &[u8]) -> (Vec<u8>, [u8; 32]) {
        let mut out = Vec::new();
        let mut writer = Writer::new(&mut out).unwrap();
        writer.write_all(b"{\"a\":1}").unwrap();
        writer.start(Section::Root).unwrap();
        writer.write_all(root).unwrap();
        let (digest, length) = writer.finish().unwrap();
        assert_eq!(length as usize, out.len());
        (out, digest)
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let mut reader = Reader::new(bytes)?;
        let header = reader.header_bytes()?;
        reader.start(Section::StorePaths)?;
        let mut store = Vec::new();
        reader.read_to_end(&mut store)?;
        reader.start(Section::Root)?;
        let mut root = Vec::new();
        reader.read_to_end(&mut root)?;
        reader.start(Section::Data)?;
        reader.finish()?;
        Ok((header, store, root))
    }

    #[test]
    fn what_is_written_reads_back() {
        let root: Vec<u8> = (0..3 * FRAME_SIZE + 7).map(|i| i as u8).collect();
        let (bytes, digest) = written(&root);
        assert!(bytes.starts_with(b"nixcloud-container export 1\n"));
        let (header, store, read_root) = read_all(&bytes).unwrap();
        assert_eq!(header, b"{\"a\":1}");
        assert!(store.is_empty(), "a section without frames is empty");
        assert_eq!(read_root, root);
        assert_eq!(crate::transfer::sha256::digest(&bytes[..bytes.len() - 37]), digest);
    }

    #[test]
    fn a_file_cut_short_or_changed_is_refused() {
        let (bytes, _) = written(&vec![7u8; 5000]);
        for cut in [0, 10, 40, bytes.len() / 2, bytes.len() - 1] {
            let err = read_all(&bytes[..cut]).unwrap_err();
            assert!(
                format!("{err:#}").contains("damaged")
                    || format!("{err:#}").contains("not an export"),
                "{cut}: {err:#}"
            );
        }
        for position in [30, 40, bytes.len() / 2, bytes.len() - 5] {
            let mut changed = bytes.clone();
            changed[position] ^= 1;
            let err = read_all(&changed).unwrap_err();
            assert!(format!("{err:#}").contains("damaged"), "{position}: {err:#}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(format!("{:#}", read_all(&longer).unwrap_err()).contains("follows its end"));
        let mut other_version = bytes.clone();
        other_version[26] = b'2';
        assert!(format!("{:#}", read_all(&other_version).unwrap_err()).contains("version"));
    }
}
