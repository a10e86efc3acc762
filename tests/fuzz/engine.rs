//! A small deterministic mutation fuzzer on stable Rust, with no dependency: seeds from real
//! files, mutations (bit flips, byte and word overwrites with interesting values, varints,
//! protobuf fields rewritten in place,
//! truncation, chunk duplication and deletion, splicing two seeds, inserted tokens), every input
//! run under `catch_unwind`, a global allocator that stops the run on any single allocation
//! above [`MAX_ALLOC`] (saving the input first), and a watchdog that stops it when one input
//! runs past the per-input budget. Input `i` of a target depends only on the target's name, its
//! seeds and `i`, so a failure is reproducible; failing inputs are saved under
//! `target/tmp/fuzz-failures/` and can be replayed with `CREMA_FUZZ_REPLAY=<file>`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The largest single allocation a reader may make on a fuzz input.
pub const MAX_ALLOC: usize = 512 << 20;
/// The largest input the mutator makes.
const MAX_INPUT: usize = 4 << 20;

thread_local! {
    /// The input being run on this thread (address, length) and the raw descriptor of the file
    /// it is dumped to when it asks for too much memory.
    static CURRENT: Cell<(usize, usize, i32)> = const { Cell::new((0, 0, -1)) };
}

/// Refuses (after saving the input) any single allocation above [`MAX_ALLOC`]. A refused
/// allocation aborts the process: an allocator may not unwind.
pub struct BoundedAlloc;

fn oversized(size: usize) {
    use std::os::fd::FromRawFd;
    let (addr, len, fd) = CURRENT.with(|c| c.get());
    let mut err = std::io::stderr();
    let _ = err.write_all(b"\nfuzz: a reader asked for one allocation above 512 MiB (");
    let mut digits = [0u8; 20];
    let mut n = size;
    let mut k = digits.len();
    loop {
        k -= 1;
        digits[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let _ = err.write_all(&digits[k..]);
    let _ = err.write_all(b" bytes)");
    if fd >= 0 && addr != 0 {
        // SAFETY: `addr..addr+len` is the input slice `run` keeps alive while the reader runs,
        // and `fd` is the open dump file it owns; ManuallyDrop leaves it open.
        let input = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
        let f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
        let _ = (&*f).write_all(input);
        let _ = err.write_all(b"; the input is saved in target/tmp/fuzz-failures/*-oversized.bin");
    }
    let _ = err.write_all(b"\n");
}

// SAFETY: forwards to the system allocator; only refuses (null) what is above the bound.
unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() > MAX_ALLOC {
            oversized(l.size());
            return std::ptr::null_mut();
        }
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if l.size() > MAX_ALLOC {
            oversized(l.size());
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > MAX_ALLOC {
            oversized(new);
            return std::ptr::null_mut();
        }
        System.realloc(p, l, new)
    }
}

/// splitmix64: small, fast, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break size arithmetic: zero, one, sign bits, -1, 2^31-1, 2^32, 2^40, ...
const INTERESTING: [u64; 18] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    u64::MAX,
    u64::MAX - 1,
    0x8000_0000_0000_0000,
    0x7fff_ffff_ffff_ffff,
];

/// Text that breaks parsers of text formats.
const TOKENS: [&str; 26] = [
    "-1",
    "0",
    "4294967296",
    "2147483648",
    "-2147483649",
    "1099511627776",
    "1e40",
    "nan",
    "-inf",
    "99999999999999999999999",
    "\"",
    "'",
    "{",
    "}",
    "[",
    "]",
    ": ",
    "\n",
    "\n  - ",
    "#",
    "&a ",
    "*a",
    "!!binary ",
    "\t",
    "\u{0}",
    "\u{e9}",
];

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Input `i` of a target: seed `i` itself for the first inputs, then a seed mutated 1-8 times.
pub fn input(name: &str, seeds: &[Vec<u8>], i: usize) -> Vec<u8> {
    if i < seeds.len() {
        return seeds[i].clone();
    }
    let mut r = Rng(name_hash(name) ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut b = seeds[r.below(seeds.len())].clone();
    let most = if r.below(4) == 0 { 8 } else { 3 };
    let rounds = 1 + r.below(most);
    for _ in 0..rounds {
        mutate(&mut b, seeds, &mut r);
    }
    b.truncate(MAX_INPUT);
    b
}

fn mutate(b: &mut Vec<u8>, seeds: &[Vec<u8>], r: &mut Rng) {
    let len = b.len();
    let pos = r.below(len + 1);
    match r.below(13) {
        0 if len > 0 => b[pos.min(len - 1)] ^= 1 << r.below(8),
        1 if len > 0 => b[pos.min(len - 1)] = INTERESTING[r.below(6)] as u8,
        2 | 3 => {
            let width = [2, 4, 8][r.below(3)];
            let mut v = INTERESTING[r.below(INTERESTING.len())];
            if r.below(4) == 0 {
                v = v.wrapping_add(r.below(5) as u64).wrapping_sub(2);
            }
            let bytes = if r.below(2) == 0 {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            let w = if r.below(2) == 0 {
                &bytes[..width]
            } else {
                &bytes[8 - width..]
            };
            overwrite(b, pos, w);
        }
        4 => {
            // A protobuf varint anywhere (lengths, sizes, dimensions, field keys).
            let enc = encode_varint(INTERESTING[r.below(INTERESTING.len())]);
            overwrite(b, pos, &enc);
        }
        10 | 11 => {
            // Structure-aware: one varint field of the message (a dimension, a count, a
            // length) replaced by an interesting value.
            let mut spots = Vec::new();
            varint_spots(b, 0, 0, &mut spots);
            if let Some(&(at, n)) = spots.get(r.below(spots.len())) {
                let enc = encode_varint(INTERESTING[r.below(INTERESTING.len())]);
                b.splice(at..at + n, enc);
            }
        }
        5 => b.truncate(pos),
        6 if len > 0 => {
            let start = r.below(len);
            let most = if r.below(2) == 0 { 16 } else { 4096 };
            let n = 1 + r.below((len - start).min(most));
            let chunk = b[start..start + n].to_vec();
            let at = r.below(len + 1);
            b.splice(at..at, chunk);
        }
        7 if len > 0 => {
            let start = r.below(len);
            let n = 1 + r.below((len - start).min(64));
            b.drain(start..start + n);
        }
        8 => {
            let other = &seeds[r.below(seeds.len())];
            let from = r.below(other.len() + 1);
            b.truncate(pos);
            b.extend_from_slice(&other[from..]);
        }
        9 => {
            let t = TOKENS[r.below(TOKENS.len())].as_bytes();
            b.splice(pos..pos, t.iter().copied());
        }
        _ => {
            let n = 1 + r.below(16);
            let junk: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
            overwrite(b, pos, &junk);
        }
    }
}

/// The varint fields (values and lengths) of a protobuf message, nested messages included,
/// as `(offset, length)`: what a structure-aware mutation rewrites. Bytes that are not a
/// message end the walk.
fn varint_spots(b: &[u8], base: usize, depth: u32, out: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    let varint = |i: &mut usize| -> Option<(u64, usize)> {
        let start = *i;
        let mut v = 0u64;
        for k in 0..10 {
            let byte = *b.get(*i)?;
            *i += 1;
            v |= ((byte & 0x7f) as u64) << (7 * k);
            if byte & 0x80 == 0 {
                return Some((v, *i - start));
            }
        }
        None
    };
    while i < b.len() && out.len() < 10_000 {
        let Some((key, _)) = varint(&mut i) else {
            return;
        };
        let at = i;
        match key & 7 {
            0 => match varint(&mut i) {
                Some((_, n)) => out.push((base + at, n)),
                None => return,
            },
            1 => i += 8,
            5 => i += 4,
            2 => {
                let Some((len, n)) = varint(&mut i) else {
                    return;
                };
                out.push((base + at, n));
                let Some(body) = usize::try_from(len)
                    .ok()
                    .and_then(|l| b.get(i..i.checked_add(l)?))
                else {
                    return;
                };
                if depth < 3 {
                    varint_spots(body, base + i, depth + 1, out);
                }
                i += body.len();
            }
            _ => return,
        }
    }
}

fn encode_varint(mut v: u64) -> Vec<u8> {
    let mut enc = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            enc.push(byte);
            return enc;
        }
        enc.push(byte | 0x80);
    }
}

fn overwrite(b: &mut Vec<u8>, pos: usize, w: &[u8]) {
    let end = (pos + w.len()).min(b.len());
    b.splice(pos..end, w.iter().copied());
}

/// Inputs per target: `CREMA_FUZZ_INPUTS` when set, else `default` (the CI pass).
pub fn inputs(default: usize) -> usize {
    std::env::var("CREMA_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds one input may take before the run is stopped as a hang (`CREMA_FUZZ_BUDGET_S`).
fn budget() -> Duration {
    let s = std::env::var("CREMA_FUZZ_BUDGET_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(s)
}

/// Where failing inputs are saved.
pub fn failure_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let _ = std::fs::create_dir_all(&d);
    d
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `count` inputs of target `name` through `run` (true when the reader accepted the input),
/// each under `catch_unwind`, and panics
/// with every failure (panic, saved input) at the end. `CREMA_FUZZ_REPLAY=<file>` runs only that
/// file, for the target whose name starts its file name. Returns how many inputs ran.
pub fn fuzz(name: &str, seeds: Vec<Vec<u8>>, count: usize, run: impl Fn(&[u8]) -> bool) -> usize {
    assert!(!seeds.is_empty(), "fuzz target {name} has no seed");
    if let Ok(replay) = std::env::var("CREMA_FUZZ_REPLAY") {
        let file = PathBuf::from(&replay);
        let base = file.file_name().and_then(|f| f.to_str()).unwrap_or("");
        if !base.starts_with(&format!("{name}-")) {
            return 0;
        }
        let bytes = std::fs::read(&file).expect("the replay file");
        eprintln!("fuzz {name}: replayed {replay}: accepted {}", run(&bytes));
        return 1;
    }
    let dir = failure_dir();
    let dump_path = dir.join(format!("{name}-oversized.bin"));
    let dump = std::fs::File::create(&dump_path).expect("the dump file");
    let (tx, rx) = mpsc::channel::<Option<usize>>();
    let watch_seeds = seeds.clone();
    let watch_name = name.to_string();
    let watch_dir = dir.clone();
    let limit = budget();
    let watchdog = std::thread::spawn(move || {
        let mut current = None;
        loop {
            match rx.recv_timeout(limit) {
                Ok(Some(i)) => current = Some(i),
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(i) = current {
                        let p = watch_dir.join(format!("{watch_name}-{i}-hang.bin"));
                        let _ = std::fs::write(&p, input(&watch_name, &watch_seeds, i));
                        eprintln!(
                            "fuzz: {watch_name} input {i} ran past the {limit:?} budget; saved in {}",
                            p.display()
                        );
                        std::process::abort();
                    }
                }
            }
        }
    });
    let mut failures = Vec::new();
    let mut accepted = 0;
    let started = Instant::now();
    {
        use std::os::fd::AsRawFd;
        for i in 0..count {
            let bytes = input(name, &seeds, i);
            let _ = tx.send(Some(i));
            CURRENT.with(|c| c.set((bytes.as_ptr() as usize, bytes.len(), dump.as_raw_fd())));
            let outcome = catch_unwind(AssertUnwindSafe(|| run(&bytes)));
            CURRENT.with(|c| c.set((0, 0, -1)));
            match outcome {
                Ok(ok) => accepted += ok as usize,
                Err(p) => {
                    let path = dir.join(format!("{name}-{i}.bin"));
                    let _ = std::fs::write(&path, &bytes);
                    failures.push(format!(
                        "input {i} panicked: {}; saved in {}",
                        panic_text(&*p),
                        path.display()
                    ));
                }
            }
        }
    }
    let _ = tx.send(None);
    let _ = watchdog.join();
    drop(dump);
    let _ = std::fs::remove_file(&dump_path);
    eprintln!(
        "fuzz {name}: {count} inputs ({accepted} accepted) in {:.1} s, {} failure(s)",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "fuzz {name}: {} of {count} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    count
}
