use async_trait::async_trait;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Durability, Entry, Fence, FenceTable, Journal, Record, RunIndexEntry};
use crate::fsutil::{SharedJson, run_blocking};
use crate::{Error, ErrorKind, Result, RunId};

/// The embedded journal: one JSON-lines file per run under `runs/`, an `index.jsonl`
/// of runs, and `fences.json` with the newest fencing token per resource.
///
/// Each line is `{"crc":<crc32 of rec>,"rec":{…}}`. Intents are fsync'd before the
/// effect; outcomes are written without fsync and made durable by the next intent
/// (if an outcome is lost in a crash, resume observes the backend instead), so a
/// step costs one fsync.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use rollback_core::journal::{Durability, Entry, FileJournal, Journal};
/// use rollback_core::{RunId, Severity};
/// let dir = tempfile::tempdir().unwrap();
/// let journal = FileJournal::open(dir.path()).unwrap();
/// let run = RunId::generate();
/// let entry = Entry::Escalated { severity: Severity::S3, reason: "slow".into() };
/// assert_eq!(journal.append(&run, None, entry, Durability::Sync).await.unwrap(), 1);
/// assert_eq!(journal.read(&run).await.unwrap().len(), 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FileJournal {
    dir: PathBuf,
    open: Arc<Mutex<HashMap<RunId, Arc<Mutex<RunFile>>>>>,
    fences: Arc<SharedJson<FenceTable>>,
    stats: Arc<Stats>,
}

/// Counters of a [`FileJournal`] handle (for benchmarks and tests).
#[derive(Debug, Default)]
struct Stats {
    appends: std::sync::atomic::AtomicU64,
    syncs: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct RunFile {
    file: File,
    next_seq: u64,
    /// File length after our last write; another length means another writer
    /// (an approval from another process, a resumed run) appended since.
    known_len: u64,
    syncer: Arc<Syncer>,
}

/// Group commit: one fdatasync covers every record written before it, so parallel
/// steps waiting to make their intents durable share fsyncs.
#[derive(Debug)]
struct Syncer {
    file: File,
    /// Bytes written to the file so far (by this handle, or caught up from others).
    written: std::sync::atomic::AtomicU64,
    /// Bytes known to be durable.
    synced: Mutex<u64>,
}

impl Syncer {
    /// Makes the first `len` bytes durable; returns whether this call did an fsync.
    fn sync_to(&self, len: u64) -> Result<bool> {
        let mut synced = self.synced.lock().map_err(|_| Error::internal("journal sync mutex poisoned"))?;
        if *synced >= len {
            return Ok(false);
        }
        let covered = self.written.load(std::sync::atomic::Ordering::SeqCst);
        self.file.sync_data()?;
        *synced = covered.max(len);
        Ok(true)
    }

    fn truncated_to(&self, len: u64) {
        if let Ok(mut synced) = self.synced.lock() {
            *synced = (*synced).min(len);
        }
    }
}

impl RunFile {
    /// Re-reads the file when another writer appended, so sequence numbers stay
    /// gapless. Called with the run file's advisory lock held.
    fn catch_up(&mut self, run: &RunId) -> Result<()> {
        let len = self.file.metadata()?.len();
        if len == self.known_len {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(len as usize);
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut bytes)?;
        let parsed = parse_records(&bytes, run)?;
        if parsed.valid_len < bytes.len() {
            tracing::warn!(run = %run, dropped = bytes.len() - parsed.valid_len, "journal: dropping a torn tail");
            self.file.set_len(parsed.valid_len as u64)?;
            self.file.sync_all()?;
            self.syncer.truncated_to(parsed.valid_len as u64);
        }
        self.next_seq = parsed.records.len() as u64 + 1;
        self.known_len = parsed.valid_len as u64;
        self.syncer.written.store(self.known_len, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    crc: u32,
    #[serde(borrow)]
    rec: &'a RawValue,
}

impl FileJournal {
    /// Opens (creating) a journal directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        // Journals hold plans, reasons and hosts: readable by their owner only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("runs"))
            .map_err(|e| Error::from(e).with_operation("open journal").with_context("dir", dir.display()))?;
        let fences = Arc::new(SharedJson::process_scoped(dir.join("fences.json")));
        Ok(FileJournal { dir, open: Arc::default(), fences, stats: Arc::default() })
    }

    /// Records appended and fsyncs of run files done through this handle (and its clones).
    pub fn counters(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.stats.appends.load(Relaxed), self.stats.syncs.load(Relaxed))
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding a run's records.
    pub fn run_path(&self, run: &RunId) -> PathBuf {
        self.dir.join("runs").join(format!("{run}.jsonl"))
    }

    fn run_file(&self, run: &RunId) -> Result<Arc<Mutex<RunFile>>> {
        let mut open = self.open.lock().map_err(|_| Error::internal("journal mutex poisoned"))?;
        if let Some(file) = open.get(run) {
            return Ok(file.clone());
        }
        let path = self.run_path(run);
        let existed = path.exists();
        let file = OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(&path)?;
        if !existed {
            File::open(self.dir.join("runs"))?.sync_all()?;
        }
        // known_len = u64::MAX forces a full read (and tail repair) on first append.
        let syncer = Arc::new(Syncer { file: file.try_clone()?, written: Default::default(), synced: Mutex::new(0) });
        let entry = Arc::new(Mutex::new(RunFile { file, next_seq: 1, known_len: u64::MAX, syncer }));
        open.insert(run.clone(), entry.clone());
        Ok(entry)
    }

    fn append_blocking(
        &self,
        run: &RunId,
        fence: Option<&Fence>,
        entries: Vec<Entry>,
        durability: Durability,
    ) -> Result<u64> {
        let index_entry = entries.iter().find_map(|entry| match entry {
            Entry::RunStarted { plan, .. } => Some(plan.name.clone()),
            _ => None,
        });
        let count = entries.len() as u64;
        let (seq, written, syncer) = {
            let run_file = self.run_file(run)?;
            let mut run_file = run_file.lock().map_err(|_| Error::internal("journal mutex poisoned"))?;
            let seq = self.append_locked(&mut run_file, run, fence, entries)?;
            (seq, run_file.known_len, run_file.syncer.clone())
        };
        self.stats.appends.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        // The fsync happens outside the run file's locks, so others keep writing and
        // one fsync can cover several intents.
        if durability == Durability::Sync && syncer.sync_to(written)? {
            self.stats.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(plan) = index_entry {
            let entry = RunIndexEntry { run: run.clone(), plan, started_at: chrono::Utc::now() };
            let mut index =
                OpenOptions::new().append(true).create(true).mode(0o600).open(self.dir.join("index.jsonl"))?;
            let mut line = serde_json::to_vec(&entry).map_err(|e| Error::internal(e.to_string()))?;
            line.push(b'\n');
            // Not fsync'd: an entry lost in a machine crash is found again by `runs`
            // from the run file itself (whose first record is durable with the first intent).
            index.write_all(&line)?;
        }
        Ok(seq)
    }

    /// Runs with a file under `runs/` but no index line (the index is written without
    /// fsync, so a machine crash can lose its tail), from their first record.
    fn unindexed(&self, indexed: &[RunIndexEntry]) -> Vec<RunIndexEntry> {
        let known: std::collections::HashSet<&RunId> = indexed.iter().map(|r| &r.run).collect();
        let Ok(files) = std::fs::read_dir(self.dir.join("runs")) else { return Vec::new() };
        let mut found: Vec<RunIndexEntry> = files
            .filter_map(|f| f.ok())
            .filter_map(|f| f.file_name().to_str()?.strip_suffix(".jsonl")?.parse::<RunId>().ok())
            .filter(|run| !known.contains(run))
            .filter_map(|run| {
                let file = File::open(self.run_path(&run)).ok()?;
                let mut first = Vec::new();
                std::io::BufRead::read_until(&mut std::io::BufReader::new(file), b'\n', &mut first).ok()?;
                let record = decode_line(first.strip_suffix(b"\n")?).ok()?;
                match record.entry {
                    Entry::RunStarted { plan, .. } => {
                        Some(RunIndexEntry { run, plan: plan.name, started_at: record.at })
                    }
                    _ => None,
                }
            })
            .collect();
        found.sort_by_key(|r| r.started_at);
        found
    }

    fn append_locked(
        &self,
        run_file: &mut RunFile,
        run: &RunId,
        fence: Option<&Fence>,
        entries: Vec<Entry>,
    ) -> Result<u64> {
        // One journal-wide lock (the fence table's) orders every writer of every
        // process. Under it, the run file's length tells whether another writer (of
        // this or another process, fenced with the same token or not) appended since
        // our last append: then read its records first, so sequence numbers stay gapless.
        self.fences.update(|table: &mut FenceTable, changed_by_others| {
            let changed = match fence {
                Some(fence) => table.admit(fence)?,
                None => {
                    table.bump();
                    true
                }
            };
            let grown = run_file.file.metadata().map(|m| m.len()).ok() != Some(run_file.known_len);
            if changed_by_others || grown {
                run_file.catch_up(run)?;
            }
            let first = run_file.next_seq;
            let count = entries.len() as u64;
            let mut lines = String::new();
            let at = chrono::Utc::now();
            for (i, entry) in entries.into_iter().enumerate() {
                let record =
                    Record { seq: first + i as u64, run: run.clone(), token: fence.map_or(0, Fence::token), at, entry };
                let rec =
                    serde_json::to_string(&record).map_err(|e| Error::internal(format!("journal record: {e}")))?;
                lines.push_str(&format!("{{\"crc\":{},\"rec\":{rec}}}\n", crc32fast::hash(rec.as_bytes())));
            }
            if let Err(err) = run_file.file.write_all(lines.as_bytes()) {
                run_file.known_len = u64::MAX; // re-read before the next append
                return Err(err.into());
            }
            run_file.next_seq = first + count;
            run_file.known_len += lines.len() as u64;
            run_file.syncer.written.store(run_file.known_len, std::sync::atomic::Ordering::SeqCst);
            Ok((run_file.next_seq - 1, changed))
        })
    }
}

#[async_trait]
impl Journal for FileJournal {
    async fn append(&self, run: &RunId, fence: Option<&Fence>, entry: Entry, durability: Durability) -> Result<u64> {
        self.append_batch(run, fence, vec![entry], durability).await
    }

    async fn append_batch(
        &self,
        run: &RunId,
        fence: Option<&Fence>,
        entries: Vec<Entry>,
        durability: Durability,
    ) -> Result<u64> {
        run_blocking(|| self.append_blocking(run, fence, entries, durability))
            .map_err(|e| e.with_operation("journal append"))
    }

    async fn read(&self, run: &RunId) -> Result<Vec<Record>> {
        let path = self.run_path(run);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(format!("no journal for run {run}")).with_context("path", path.display()));
            }
            Err(e) => return Err(Error::from(e).with_operation("journal read")),
        };
        Ok(parse_records(&bytes, run)
            .map_err(|e| e.with_operation("journal read").with_context("path", path.display()))?
            .records)
    }

    async fn runs(&self) -> Result<Vec<RunIndexEntry>> {
        let text = match tokio::fs::read_to_string(self.dir.join("index.jsonl")).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        // The index is derived data: a torn or bad line is skipped, never fatal.
        let mut runs: Vec<RunIndexEntry> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        runs.extend(run_blocking(|| self.unindexed(&runs)));
        Ok(runs)
    }
}

/// What [`parse_records`] recovered.
#[derive(Debug)]
pub struct Parsed {
    /// Complete, checksummed records in order.
    pub records: Vec<Record>,
    /// Bytes up to the end of the last complete record.
    pub valid_len: usize,
}

/// Parses a run file. A torn or corrupt **last** line is dropped (a crash mid-write);
/// a bad line followed by good ones, a sequence gap or a record of another run is an
/// [`ErrorKind::Corrupt`] error. Never panics, whatever the bytes.
pub fn parse_records(bytes: &[u8], run: &RunId) -> Result<Parsed> {
    let mut records: Vec<Record> = Vec::new();
    let mut valid_len = 0usize;
    let mut offset = 0usize;
    let mut bad_line: Option<(usize, String)> = None;
    let mut line_no = 0usize;
    while offset < bytes.len() {
        let Some(end) = bytes[offset..].iter().position(|&b| b == b'\n') else {
            break; // torn final write: no newline
        };
        line_no += 1;
        let line = &bytes[offset..offset + end];
        let next = offset + end + 1;
        if let Some((bad_no, why)) = &bad_line {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("journal line {bad_no} is corrupt ({why}) and complete records follow it"),
            ));
        }
        match decode_line(line) {
            Ok(record) => {
                let expected = records.len() as u64 + 1;
                if record.seq != expected {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!("journal line {line_no} has sequence {} where {expected} was expected", record.seq),
                    ));
                }
                if &record.run != run {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!("journal line {line_no} belongs to run {}, not {run}", record.run),
                    ));
                }
                records.push(record);
                valid_len = next;
            }
            Err(why) => bad_line = Some((line_no, why)),
        }
        offset = next;
    }
    Ok(Parsed { records, valid_len })
}

fn decode_line(line: &[u8]) -> std::result::Result<Record, String> {
    let line: Line<'_> = serde_json::from_slice(line).map_err(|e| format!("not a journal line: {e}"))?;
    let rec = line.rec.get();
    if crc32fast::hash(rec.as_bytes()) != line.crc {
        return Err("checksum mismatch".into());
    }
    serde_json::from_str(rec).map_err(|e| format!("bad record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;

    fn entry(n: u32) -> Entry {
        Entry::Escalated { severity: Severity::S3, reason: format!("r{n}") }
    }

    async fn journal_with(n: u32) -> (tempfile::TempDir, FileJournal, RunId) {
        let dir = tempfile::tempdir().unwrap();
        let journal = FileJournal::open(dir.path()).unwrap();
        let run = RunId::generate();
        for i in 0..n {
            journal.append(&run, None, entry(i), Durability::Buffered).await.unwrap();
        }
        (dir, journal, run)
    }

    #[tokio::test]
    async fn journal_files_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home").join("journal");
        let journal = FileJournal::open(&root).unwrap();
        let run = RunId::generate();
        let plan = Box::new(crate::Plan::new("p"));
        let started = Entry::RunStarted { plan, holder: "h".into(), reason: None, host: None };
        journal.append(&run, None, started, Durability::Sync).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("runs")), 0o700);
        assert_eq!(mode(&journal.run_path(&run)), 0o600);
        assert_eq!(mode(&root.join("index.jsonl")), 0o600);
    }

    /// The index and the fence table are written without fsync: a machine crash may
    /// lose the index's tail (the run is found from its own file) or tear the fence
    /// table (read as empty: every holder it guarded against died with the machine).
    #[tokio::test]
    async fn a_lost_index_line_and_a_torn_fence_table_are_survived() {
        let dir = tempfile::tempdir().unwrap();
        let journal = FileJournal::open(dir.path()).unwrap();
        let run = RunId::generate();
        let started = Entry::RunStarted {
            plan: Box::new(crate::Plan::new("web back")),
            holder: "h".into(),
            reason: None,
            host: None,
        };
        let fence = Fence::new(vec!["web".into()], 3);
        journal.append(&run, Some(&fence), started, Durability::Sync).await.unwrap();
        std::fs::write(dir.path().join("index.jsonl"), "").unwrap();
        std::fs::write(dir.path().join("fences.json"), "{\"newest\": {\"we").unwrap();

        let after_crash = FileJournal::open(dir.path()).unwrap();
        let runs = after_crash.runs().await.unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!((&runs[0].run, runs[0].plan.as_str()), (&run, "web back"));
        let next = Fence::new(vec!["web".into()], 4);
        assert_eq!(after_crash.append(&run, Some(&next), entry(1), Durability::Sync).await.unwrap(), 2);
        let stale = after_crash.append(&run, Some(&fence), entry(2), Durability::Sync).await.unwrap_err();
        assert_eq!(stale.kind(), ErrorKind::Locked, "fencing works again from the new table: {stale}");
    }

    /// A running engine appends fenced records with one token (the fence table does not
    /// change); a second, long-lived journal on the same directory appends an approval,
    /// then later an annotation: its second append must see the records in between.
    #[tokio::test]
    async fn a_second_writer_sees_same_token_appends_of_the_first() {
        let (_dir, running, run) = journal_with(0).await;
        let other = FileJournal::open(running.dir()).unwrap();
        let fence = Fence::new(vec!["web".into()], 5);
        running.append(&run, Some(&fence), entry(1), Durability::Sync).await.unwrap();
        assert_eq!(other.append(&run, None, entry(2), Durability::Sync).await.unwrap(), 2);
        running.append(&run, Some(&fence), entry(3), Durability::Sync).await.unwrap();
        running.append(&run, Some(&fence), entry(4), Durability::Sync).await.unwrap();
        assert_eq!(other.append(&run, None, entry(5), Durability::Sync).await.unwrap(), 5);
        let seqs: Vec<u64> = running.read(&run).await.unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn every_truncation_point_recovers_complete_records() {
        let (_dir, journal, run) = journal_with(4).await;
        let bytes = std::fs::read(journal.run_path(&run)).unwrap();
        let ends: Vec<usize> = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
        for cut in 0..=bytes.len() {
            let parsed = parse_records(&bytes[..cut], &run).unwrap();
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(parsed.records.len(), complete, "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn corrupt_tail_is_dropped_and_appends_continue() {
        let (_dir, journal, run) = journal_with(3).await;
        let path = journal.run_path(&run);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 5;
        bytes[last] ^= 0x20; // flip a bit inside the last record
        std::fs::write(&path, &bytes).unwrap();
        let fresh = FileJournal::open(journal.dir()).unwrap();
        assert_eq!(fresh.read(&run).await.unwrap().len(), 2);
        assert_eq!(fresh.append(&run, None, entry(9), Durability::Sync).await.unwrap(), 3);
        let records = fresh.read(&run).await.unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].entry, entry(9));
    }

    #[tokio::test]
    async fn corruption_before_the_tail_is_an_error() {
        let (_dir, journal, run) = journal_with(3).await;
        let path = journal.run_path(&run);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] = b'#';
        std::fs::write(&path, &bytes).unwrap();
        let err = journal.read(&run).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn garbage_never_panics() {
        let run: RunId = "r".parse().unwrap();
        for bytes in [&b"\n\n\n"[..], b"{\"crc\":1,\"rec\":{}}\n", b"\xff\xfe\n{", b"{\"crc\":-1,\"rec\":null}\nx\n"] {
            let _ = parse_records(bytes, &run);
        }
    }

    #[tokio::test]
    async fn stale_fence_is_rejected_across_journal_handles() {
        let (_dir, a, run) = journal_with(0).await;
        let b = FileJournal::open(a.dir()).unwrap();
        let old = Fence::new(vec!["web".into()], 1);
        let new = Fence::new(vec!["web".into()], 2);
        a.append(&run, Some(&old), entry(0), Durability::Sync).await.unwrap();
        b.append(&RunId::generate(), Some(&new), entry(1), Durability::Sync).await.unwrap();
        let err = a.append(&run, Some(&old), entry(2), Durability::Sync).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked);
        assert_eq!(a.read(&run).await.unwrap().len(), 1, "the rejected record was not written");
    }
}
