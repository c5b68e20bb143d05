//! Parallel gzip, as pigz writes it: the input is cut into fixed-size
//! blocks, each block is deflated on its own thread with the previous
//! block's last 32 KiB as its dictionary and ended with a sync flush (the
//! last one with the final block), and the pieces are written in order
//! between one gzip header and one trailer. The result is one ordinary
//! gzip member any gunzip reads.
//!
//! The bytes depend on the input and the level only: block boundaries are
//! fixed, and each block's dictionary is input, not output. So a layer's
//! digest is the same on a 2-core runner and a 64-core node, which the
//! layer cache and `--reproducible` rely on.
//!
//! gzp (the crate) does this too, but its dictionary support needs C zlib
//! for an Adler-32 it uses elsewhere; flate2 on zlib-rs, which kiln already
//! builds, has everything a gzip stream needs.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Input bytes per block: pigz's default.
pub const BLOCK_SIZE: usize = 128 * 1024;
/// The dictionary a block is primed with: deflate's whole window.
const DICTIONARY_SIZE: usize = 32 * 1024;

/// One block to deflate, and where its output goes.
struct Job {
    input: Vec<u8>,
    dictionary: Vec<u8>,
    last: bool,
    done: SyncSender<io::Result<Vec<u8>>>,
}

/// A gzip writer that deflates blocks on `workers` threads. Memory is
/// bounded: at most two blocks per worker are in flight.
pub struct ParallelGzip<W: Write> {
    inner: Option<W>,
    level: Compression,
    block: Vec<u8>,
    /// The tail of the last block sent, the next block's dictionary.
    dictionary: Vec<u8>,
    crc: Crc,
    jobs: Option<SyncSender<Job>>,
    /// Outputs in input order, oldest first.
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    in_flight: usize,
    workers: Vec<JoinHandle<()>>,
    header_written: bool,
}

impl<W: Write> ParallelGzip<W> {
    /// A writer of one gzip member into `inner`, at `level` (0–9), with
    /// `workers` threads (at least one).
    pub fn new(inner: W, level: Compression, workers: usize) -> ParallelGzip<W> {
        let workers = workers.max(1);
        let (jobs, queue) = sync_channel::<Job>(workers * 2);
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..workers)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || work(&queue, level))
            })
            .collect();
        ParallelGzip {
            inner: Some(inner),
            level,
            block: Vec::with_capacity(BLOCK_SIZE),
            dictionary: Vec::new(),
            crc: Crc::new(),
            jobs: Some(jobs),
            pending: VecDeque::new(),
            in_flight: workers * 2,
            workers: threads,
            header_written: false,
        }
    }

    fn inner(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("the gzip stream is already finished"))
    }

    fn write_header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        // No name, no comment, mtime 0: the bytes depend on the content.
        // XFL says "best" or "fastest" where the level is one of those.
        let extra_flags = match self.level.level() {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        let header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, extra_flags, 255];
        self.inner()?.write_all(&header)?;
        self.header_written = true;
        Ok(())
    }

    /// Sends the current block to a worker; with `last`, the final one.
    fn send_block(&mut self, last: bool) -> io::Result<()> {
        self.write_header()?;
        let input = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let tail = input.len().saturating_sub(DICTIONARY_SIZE);
        let next_dictionary = input[tail..].to_vec();
        let dictionary = std::mem::replace(&mut self.dictionary, next_dictionary);
        let (done, output) = sync_channel(1);
        let job = Job {
            input,
            dictionary,
            last,
            done,
        };
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("the gzip workers are gone"))?
            .send(job)
            .map_err(|_| io::Error::other("the gzip workers stopped"))?;
        self.pending.push_back(output);
        while self.pending.len() >= self.in_flight {
            self.write_oldest()?;
        }
        Ok(())
    }

    /// Waits for the oldest block's output and writes it.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(output) = self.pending.pop_front() else {
            return Ok(());
        };
        let bytes = output
            .recv()
            .map_err(|_| io::Error::other("a gzip worker stopped"))??;
        self.inner()?.write_all(&bytes)
    }

    /// Ends the stream (the final block, the CRC-32 and length trailer)
    /// and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send_block(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let crc = self.crc.sum();
        let length = self.crc.amount();
        let inner = self.inner()?;
        inner.write_all(&crc.to_le_bytes())?;
        inner.write_all(&length.to_le_bytes())?;
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("the gzip stream is already finished"))
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.block.len();
        let taken = &buf[..buf.len().min(room)];
        self.block.extend_from_slice(taken);
        self.crc.update(taken);
        if self.block.len() == BLOCK_SIZE {
            self.send_block(false)?;
        }
        Ok(taken.len())
    }

    /// Blocks are cut at fixed sizes only (a flush must not change the
    /// bytes); everything reaches `inner` at [`ParallelGzip::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        // Closing the queue ends the workers once they are idle.
        self.jobs.take();
        self.pending.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// A worker: deflates jobs until the queue closes.
fn work(queue: &Mutex<Receiver<Job>>, level: Compression) {
    let mut compress = Compress::new(level, false);
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        compress.reset();
        let output = deflate_block(&mut compress, &job.input, &job.dictionary, job.last);
        // The writer may be gone (dropped on an error): nothing to do.
        let _ = job.done.send(output);
    }
}

/// Raw deflate of one block, primed with `dictionary`, ending on a byte
/// boundary (sync flush) or, for the last block, with the final block.
fn deflate_block(
    compress: &mut Compress,
    input: &[u8],
    dictionary: &[u8],
    last: bool,
) -> io::Result<Vec<u8>> {
    if !dictionary.is_empty() {
        compress
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Deflate's worst case is a little over the input; a sync flush adds
    // a few bytes.
    let mut output = Vec::with_capacity(input.len() + input.len() / 64 + 64);
    let start_in = compress.total_in();
    loop {
        let consumed = (compress.total_in() - start_in) as usize;
        if output.len() == output.capacity() {
            output.reserve(input.len() / 8 + 64);
        }
        let status = compress
            .compress_vec(&input[consumed..], &mut output, flush)
            .map_err(io::Error::other)?;
        let all_in = (compress.total_in() - start_in) as usize == input.len();
        match status {
            Status::StreamEnd => return Ok(output),
            // zlib's rule: a flush is complete when it left output room.
            Status::Ok | Status::BufError
                if !last && all_in && output.len() < output.capacity() =>
            {
                return Ok(output);
            }
            Status::Ok | Status::BufError => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Read;

    /// Bytes that compress somewhat: a mix of text and noise.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if i % 3 == 0 {
                    (state >> 56) as u8
                } else {
                    b"the quick brown fox "[i % 20]
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], level: u32, workers: usize, chunk: usize) -> Vec<u8> {
        let mut writer = ParallelGzip::new(Vec::new(), Compression::new(level), workers);
        for piece in data.chunks(chunk.max(1)) {
            writer.write_all(piece).unwrap();
            writer.flush().unwrap();
        }
        writer.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn any_gunzip_reads_it_back() {
        for len in [
            0,
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            5 * BLOCK_SIZE + 77,
        ] {
            for level in [0, 1, 6, 9] {
                let data = sample(len, len as u64);
                let bytes = gzip(&data, level, 3, 10_000);
                assert_eq!(gunzip(&bytes), data, "len {len} level {level}");
            }
        }
    }

    #[test]
    fn the_bytes_depend_on_neither_threads_nor_write_sizes() {
        let data = sample(3 * BLOCK_SIZE + 1234, 7);
        let one = gzip(&data, 6, 1, data.len());
        for (workers, chunk) in [(2, 4096), (4, 1), (8, BLOCK_SIZE + 3)] {
            assert_eq!(
                gzip(&data, 6, workers, chunk),
                one,
                "{workers} workers, {chunk}-byte writes"
            );
        }
    }

    #[test]
    fn the_dictionary_keeps_the_ratio_of_one_stream() {
        // 16 KiB of noise repeated: each block starts with what the
        // previous block ended with, which compresses only with the
        // previous block as dictionary (each block would otherwise pay
        // for the noise again).
        let noise: Vec<u8> = sample(3 * 16 * 1024, 3).into_iter().step_by(3).collect();
        let data: Vec<u8> = noise.iter().copied().cycle().take(8 * BLOCK_SIZE).collect();
        let parallel = gzip(&data, 6, 2, 65536).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!(
            parallel as f64 <= single as f64 * 1.01,
            "parallel {parallel} bytes, one stream {single}"
        );
    }
}
