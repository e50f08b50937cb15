//! A lazy file system for power-cut tests: a FUSE mount that forgets what
//! was never synced, in the spirit of Jepsen's LazyFS and RocksDB's
//! `FaultInjectionTestFS`.
//!
//! The mount serves a backing directory. At mount, the backing directory is
//! read in and is both what programs see and what is durable. From then
//! on, programs change only memory, and nothing reaches the backing
//! directory until [`LazyMount::cut_power`] (or a clean
//! [`LazyMount::unmount`]) writes it out.
//!
//! # What survives a cut (the model)
//!
//! - **File contents** are durable as of the file's last `fsync` or
//!   `fdatasync` (the two are the same here: both make data and size
//!   durable). A write, or a truncation, made after that is lost, whole.
//!   Closing a file makes nothing durable, and nor does `sync_file_range`
//!   (FUSE never hears of it), which is all sled's own flush calls.
//! - **Directory entries** (a name made by `create` or `mkdir`, removed by
//!   `unlink` or `rmdir`, moved by `rename`) are durable once their
//!   directory is synced: syncing a directory makes every change of its
//!   names so far durable. Syncing a file makes its name durable nowhere,
//!   and a rename between two directories needs both synced.
//! - A file whose name survives but whose data was never synced is empty
//!   after the cut; data synced under a name that never became durable is
//!   gone with the name.
//!
//! [`Cut::Clean`] keeps exactly that. A journaling file system also commits
//! name changes on its own (ext4 every 5 s, and at any fsync on the file
//! system), in the order they were made: [`Cut::Journal`] lets the
//! unsynced name changes survive up to a random point of that order, so a
//! removal or a rename can be durable while the data written before it is
//! not. [`Cut::Torn`] adds writes: each file keeps, in the order they were
//! made, a random prefix of its unsynced writes (possibly none, possibly
//! all), the last one kept cut short at a random byte, as a disk that lost
//! power while writing back would leave it.
//!
//! Compared with ext4 (`data=ordered`): unsynced data never survives here
//! (except torn mode's prefixes), where ext4 writes it back within
//! seconds; a new file's name survives only with its directory, where
//! ext4 commits it with the file's first `fsync`; and directories are
//! synced one by one, where ext4 commits all of them at once. What this
//! model keeps beyond [`Cut::Clean`] is what a journal commit or a
//! writeback could have kept. It does not model: writes surviving out of
//! order within a file, metadata other than names and sizes (modes are
//! written out as they are at the cut), or a rename that is atomic across
//! directories (here each directory's half survives on its own).
//!
//! The whole file system lives in memory (the tests' stores are a few
//! MiB), and one thread serves it.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::common::Rng;
use fuser::{
    BackgroundSession, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

/// What a power cut keeps of what was never synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Nothing: every unsynced write and name change is lost.
    Clean,
    /// Every unsynced write is lost; the unsynced name changes survive up
    /// to a random point of the order they were made in (a journal that
    /// committed then), or, one cut in two, none. The seed picks.
    Journal(u64),
    /// As `Journal`, and each file also keeps a random prefix of its
    /// unsynced writes, the last one kept torn.
    Torn(u64),
}

/// What a cut dropped, for the test's log.
#[derive(Debug, Default, Clone)]
pub struct CutReport {
    /// Files whose unsynced writes were dropped (wholly or partly).
    pub files_with_lost_writes: usize,
    /// Unsynced bytes written that did not survive.
    pub bytes_lost: u64,
    /// Directory entries (made or removed) that were never synced.
    pub entries_lost: usize,
    /// Files that kept a torn prefix of their unsynced writes.
    pub torn_files: usize,
}

/// Counts of what the programs on the mount asked for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub writes: u64,
    pub file_syncs: u64,
    pub dir_syncs: u64,
}

#[derive(Debug)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug)]
struct Node {
    dir: bool,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    /// What programs see.
    data: Vec<u8>,
    /// What survives a cut.
    durable: Vec<u8>,
    /// Changes to `data` since the last sync, in order.
    pending: Vec<Pending>,
    entries: BTreeMap<OsString, u64>,
    /// The names at mount; a cut replays the surviving changes onto them.
    durable_entries: BTreeMap<OsString, u64>,
}

/// One change of a name since the mount, in the order made.
#[derive(Debug)]
struct NameChange {
    dir: u64,
    name: OsString,
    /// The inode it names from then on, or none (removed).
    to: Option<u64>,
    /// Changes of one group (the two halves of a rename) survive together.
    group: u64,
    /// Its directory was synced since.
    synced: bool,
}

impl Node {
    fn new(dir: bool, perm: u16, uid: u32, gid: u32) -> Self {
        Self {
            dir,
            perm,
            uid,
            gid,
            mtime: SystemTime::now(),
            data: Vec::new(),
            durable: Vec::new(),
            pending: Vec::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
        }
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let size = if self.dir {
            4096
        } else {
            self.data.len() as u64
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.mtime,
            crtime: self.mtime,
            kind: if self.dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: self.perm,
            nlink: if self.dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

fn apply(buf: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, bytes } => {
            let start = *offset as usize;
            let end = start + bytes.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[start..end].copy_from_slice(bytes);
        }
        Pending::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

#[derive(Debug)]
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// After a cut: every request fails.
    dead: bool,
    ns_log: Vec<NameChange>,
    counts: Counts,
}

const ROOT: u64 = 1;

impl State {
    fn load(backing: &Path) -> io::Result<Self> {
        let meta = fs::metadata(backing)?;
        let mut root = Node::new(true, (meta.permissions().mode() & 0o7777) as u16, 0, 0);
        let mut nodes = HashMap::new();
        let mut next_ino = ROOT + 1;
        load_dir(backing, &mut root, &mut nodes, &mut next_ino)?;
        nodes.insert(ROOT, root);
        Ok(Self {
            nodes,
            next_ino,
            dead: false,
            ns_log: Vec::new(),
            counts: Counts::default(),
        })
    }

    fn node(&self, ino: INodeNo) -> Result<&Node, Errno> {
        if self.dead {
            return Err(Errno::EIO);
        }
        self.nodes.get(&ino.0).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: INodeNo) -> Result<&mut Node, Errno> {
        if self.dead {
            return Err(Errno::EIO);
        }
        self.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)
    }

    fn dir_mut(&mut self, ino: INodeNo) -> Result<&mut Node, Errno> {
        let node = self.node_mut(ino)?;
        if node.dir {
            Ok(node)
        } else {
            Err(Errno::ENOTDIR)
        }
    }

    fn make(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        dir: bool,
        perm: u16,
        req: &Request,
    ) -> Result<FileAttr, Errno> {
        let ino = self.next_ino;
        let p = self.dir_mut(parent)?;
        if p.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        p.entries.insert(name.to_owned(), ino);
        p.mtime = SystemTime::now();
        self.next_ino += 1;
        let group = self.next_group();
        self.log_name(parent, name, Some(ino), group);
        let node = Node::new(dir, perm, req.uid(), req.gid());
        let attr = node.attr(ino);
        self.nodes.insert(ino, node);
        Ok(attr)
    }

    /// Settles what survives and writes it to `to`: with `cut`, what was
    /// durable (see the module docs); without, everything (a clean
    /// shutdown).
    fn write_out(&mut self, to: &Path, cut: Option<Cut>) -> io::Result<CutReport> {
        let mut report = CutReport::default();
        let Some(cut) = cut else {
            for node in self.nodes.values_mut() {
                node.durable = std::mem::take(&mut node.data);
                node.durable_entries = node.entries.clone();
            }
            return self.replace(to).map(|()| report);
        };
        let (mut rng, torn, journal) = match cut {
            Cut::Clean => (Rng(0), false, false),
            Cut::Journal(seed) => (Rng(seed), false, true),
            Cut::Torn(seed) => (Rng(seed), true, true),
        };
        // Names: the synced changes, and (journal) the unsynced ones up to
        // a random point of their order; one in two journal cuts keeps none.
        let groups = self.ns_log.last().map_or(0, |op| op.group + 1);
        let upto = match journal && rng.below(2) == 0 {
            true => rng.below(groups + 1),
            false => 0,
        };
        for op in std::mem::take(&mut self.ns_log) {
            let Some(dir) = self.nodes.get_mut(&op.dir) else {
                continue;
            };
            if op.synced || op.group < upto {
                match op.to {
                    Some(ino) => dir.durable_entries.insert(op.name, ino),
                    None => dir.durable_entries.remove(&op.name),
                };
            } else {
                report.entries_lost += 1;
            }
        }
        // Data: by inode number, so that a seed replays the same cut.
        let mut inos: Vec<u64> = self.nodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let Some(node) = self.nodes.get_mut(&ino) else {
                continue;
            };
            if node.dir || node.pending.is_empty() {
                continue;
            }
            report.files_with_lost_writes += 1;
            let keep = match torn {
                true => rng.below(node.pending.len() as u64 + 1) as usize,
                false => 0,
            };
            for op in &node.pending[..keep] {
                apply(&mut node.durable, op);
            }
            if let (true, Some(Pending::Write { offset, bytes })) = (torn, node.pending.get(keep)) {
                let cut = rng.below(bytes.len() as u64) as usize;
                if cut > 0 {
                    report.torn_files += 1;
                }
                let op = Pending::Write {
                    offset: *offset,
                    bytes: bytes[..cut].to_vec(),
                };
                apply(&mut node.durable, &op);
            }
            report.bytes_lost += node.pending[keep..]
                .iter()
                .map(|op| match op {
                    Pending::Write { bytes, .. } => bytes.len() as u64,
                    Pending::SetLen(_) => 0,
                })
                .sum::<u64>();
        }
        self.replace(to).map(|()| report)
    }

    /// Replaces the backing directory's contents with the durable tree.
    fn replace(&self, to: &Path) -> io::Result<()> {
        for entry in fs::read_dir(to)? {
            let path = entry?.path();
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        self.write_dir(ROOT, to)
    }

    /// Logs a change of one name in `dir`; `group` ties the two halves of
    /// a rename together.
    fn log_name(&mut self, dir: INodeNo, name: &OsStr, to: Option<u64>, group: u64) {
        self.ns_log.push(NameChange {
            dir: dir.0,
            name: name.to_owned(),
            to,
            group,
            synced: false,
        });
    }

    fn next_group(&self) -> u64 {
        self.ns_log.last().map_or(0, |op| op.group + 1)
    }

    fn write_dir(&self, ino: u64, path: &Path) -> io::Result<()> {
        let Some(node) = self.nodes.get(&ino) else {
            return Ok(());
        };
        for (name, child) in &node.durable_entries {
            let Some(c) = self.nodes.get(child) else {
                continue;
            };
            let p = path.join(name);
            if c.dir {
                fs::DirBuilder::new().mode(u32::from(c.perm)).create(&p)?;
                self.write_dir(*child, &p)?;
            } else {
                fs::write(&p, &c.durable)?;
                fs::set_permissions(&p, fs::Permissions::from_mode(u32::from(c.perm)))?;
            }
        }
        Ok(())
    }
}

fn load_dir(
    path: &Path,
    into: &mut Node,
    nodes: &mut HashMap<u64, Node>,
    next_ino: &mut u64,
) -> io::Result<()> {
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let perm = (meta.permissions().mode() & 0o7777) as u16;
        let ino = *next_ino;
        *next_ino += 1;
        let mut node = Node::new(meta.is_dir(), perm, 0, 0);
        if meta.is_dir() {
            load_dir(&entry.path(), &mut node, nodes, next_ino)?;
        } else {
            node.data = fs::read(entry.path())?;
            node.durable = node.data.clone();
        }
        into.entries.insert(entry.file_name(), ino);
        into.durable_entries.insert(entry.file_name(), ino);
        nodes.insert(ino, node);
    }
    Ok(())
}

/// The FUSE side: every request takes the one lock.
struct LazyFs {
    state: Arc<Mutex<State>>,
}

const TTL: Duration = Duration::ZERO;

impl LazyFs {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fuser::Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let st = self.lock();
        let found = st.node(parent).and_then(|p| {
            let ino = *p.entries.get(name).ok_or(Errno::ENOENT)?;
            Ok(st.node(INodeNo(ino))?.attr(ino))
        });
        match found {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().node(ino) {
            Ok(n) => reply.attr(&TTL, &n.attr(ino.0)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.lock();
        let res = st.node_mut(ino).map(|n| {
            if let Some(mode) = mode {
                n.perm = (mode & 0o7777) as u16;
            }
            if let Some(uid) = uid {
                n.uid = uid;
            }
            if let Some(gid) = gid {
                n.gid = gid;
            }
            if let Some(size) = size.filter(|_| !n.dir) {
                let op = Pending::SetLen(size);
                apply(&mut n.data, &op);
                n.pending.push(op);
                n.mtime = SystemTime::now();
            }
            n.attr(ino.0)
        });
        match res {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        match self.lock().make(parent, name, true, perm, req) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        match self.lock().make(parent, name, false, perm, req) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        let res = st.dir_mut(parent).and_then(|p| {
            p.entries.remove(name).ok_or(Errno::ENOENT)?;
            p.mtime = SystemTime::now();
            Ok(())
        });
        if res.is_ok() {
            let group = st.next_group();
            st.log_name(parent, name, None, group);
        }
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        let res = (|| {
            let ino = *st.node(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
            let child = st.node(INodeNo(ino))?;
            if !child.dir {
                return Err(Errno::ENOTDIR);
            }
            if !child.entries.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            st.dir_mut(parent)?.entries.remove(name);
            let group = st.next_group();
            st.log_name(parent, name, None, group);
            Ok(())
        })();
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        let res = (|| {
            if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
                return Err(Errno::EINVAL);
            }
            let ino = *st.node(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
            if let Some(old) = st.node(newparent)?.entries.get(newname) {
                if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    return Err(Errno::EEXIST);
                }
                let old = st.node(INodeNo(*old))?;
                if old.dir && !old.entries.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
            }
            st.dir_mut(parent)?.entries.remove(name);
            let np = st.dir_mut(newparent)?;
            np.entries.insert(newname.to_owned(), ino);
            np.mtime = SystemTime::now();
            let group = st.next_group();
            st.log_name(parent, name, None, group);
            st.log_name(newparent, newname, Some(ino), group);
            Ok(())
        })();
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().node(ino) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let st = self.lock();
        match st.node(ino) {
            Ok(n) => {
                let start = (offset as usize).min(n.data.len());
                let end = (start + size as usize).min(n.data.len());
                reply.data(&n.data[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut st = self.lock();
        st.counts.writes += 1;
        match st.node_mut(ino) {
            Ok(n) if !n.dir => {
                let op = Pending::Write {
                    offset,
                    bytes: data.to_vec(),
                };
                apply(&mut n.data, &op);
                n.pending.push(op);
                n.mtime = SystemTime::now();
                reply.written(data.len() as u32);
            }
            Ok(_) => reply.error(Errno::EISDIR),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2): makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        st.counts.file_syncs += 1;
        match st.node_mut(ino) {
            Ok(n) => {
                for op in std::mem::take(&mut n.pending) {
                    apply(&mut n.durable, &op);
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().node(ino) {
            Ok(n) if n.dir => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let st = self.lock();
        let n = match st.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let mut all: Vec<(u64, FileType, OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for (name, child) in &n.entries {
            let kind = match st.nodes.get(child) {
                Some(c) if c.dir => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((*child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        st.counts.dir_syncs += 1;
        match st.dir_mut(ino) {
            Ok(_) => {
                for op in st.ns_log.iter_mut().filter(|op| op.dir == ino.0) {
                    op.synced = true;
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        match self.lock().node(ino) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

/// A mounted lazy file system.
pub struct LazyMount {
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
    backing: PathBuf,
    mountpoint: PathBuf,
}

impl std::fmt::Debug for LazyMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyMount")
            .field("backing", &self.backing)
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

impl LazyMount {
    /// Mounts over `backing` at `at`, or says why not and returns `None`
    /// (the test then passes as skipped). Under `CI=true` a mount that
    /// fails is a failure.
    pub fn mount_or_skip(backing: &Path, at: &Path) -> Option<Self> {
        match Self::mount(backing, at) {
            Ok(m) => Some(m),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true, and FUSE cannot mount here: {e}")
            }
            Err(e) => {
                eprintln!("NOTICE: power-cut test skipped: FUSE cannot mount here ({e})");
                None
            }
        }
    }

    /// Mounts a lazy view of `backing` on `mountpoint` (an empty
    /// directory). Fails where FUSE cannot mount (no `/dev/fuse`, no
    /// permission to mount).
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<Self> {
        let state = Arc::new(Mutex::new(State::load(backing)?));
        let fs = LazyFs {
            state: state.clone(),
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("sessiondb-lazyfs".into()),
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        let session = fuser::spawn_mount(fs, mountpoint, &config)?;
        Ok(Self {
            state,
            session: Some(session),
            backing: backing.to_owned(),
            mountpoint: mountpoint.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the power: from this instant every request fails, and the
    /// backing directory is left holding exactly what was durable (in
    /// [`Cut::Torn`], plus the torn prefixes). Unmounts.
    pub fn cut_power(mut self, cut: Cut) -> io::Result<CutReport> {
        let report = {
            let mut st = self.lock();
            st.dead = true;
            st.write_out(&self.backing, Some(cut))?
        };
        self.unmount_fuse()?;
        Ok(report)
    }

    /// A clean shutdown: everything written, synced or not, reaches the
    /// backing directory (as an orderly OS shutdown would write it back).
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_fuse()?;
        let mut st = self.lock();
        st.dead = true;
        st.write_out(&self.backing, None).map(drop)
    }

    fn unmount_fuse(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        // umount(2) fails with EBUSY while any process holds a file of the
        // mount: a process forked meanwhile by another test of this binary
        // holds copies of our descriptors until its exec closes them, and
        // the kernel releases closed files asynchronously. Wait that out.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let unmounted = std::process::Command::new("umount")
                .arg(&self.mountpoint)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if unmounted {
                // The serving thread ends once the kernel lets go.
                return session.join();
            }
            if std::time::Instant::now() >= deadline {
                return session.umount_and_join();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LazyMount {
    fn drop(&mut self) {
        let _ = self.unmount_fuse();
    }
}
