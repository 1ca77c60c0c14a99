//! `oxcopy-copy-bench`: the three ways `bench/xcopy.sh` copies one LUN to
//! another, each timed and reported as one line
//!
//! ```text
//! RESULT mode=<mode> bytes=<n> secs=<x> mib_s=<x>
//! ```
//!
//! ```text
//! oxcopy-copy-bench fill   --file PATH --size BYTES             # real data into a backing file
//! oxcopy-copy-bench xcopy  [-i IQN] URL --src-lun N --dst-lun M  # EXTENDED COPY, target-side
//! oxcopy-copy-bench host   [-i IQN] URL --src-lun N --dst-lun M  # READ(16) + WRITE(16) through our initiator
//! oxcopy-copy-bench direct --src PATH --dst PATH                 # copy_file_range(2) on the backing files
//! ```
//!
//! `URL` is `iscsi://host:port/target-iqn` (the LUNs are options). The
//! EXTENDED COPY run uses 0Ah segments of up to 1 GiB (64 per command), the
//! host run keeps `--queue-depth` chunks of `--io-size` bytes in flight,
//! each read then written; `direct` loops copy_file_range over the whole
//! file (on XFS the kernel clones extents there too).

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use oxcopy_initiator::xcopy::{Cscd, ListIdUsage, ParamList, Segment};
use oxcopy_initiator::Session;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Copy-offload benchmark client.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write pseudo-random (non-zero, incompressible) data over a whole backing file, then fsync.
    Fill {
        #[arg(long)]
        file: PathBuf,
        /// Bytes to write from offset 0 (default: the file's size).
        #[arg(long)]
        size: Option<u64>,
    },
    /// EXTENDED COPY of the whole source LUN to the destination LUN.
    Xcopy(Iscsi),
    /// Host copy: READ(16) the source and WRITE(16) the destination through the initiator.
    Host {
        #[command(flatten)]
        iscsi: Iscsi,
        /// Chunks in flight.
        #[arg(long, default_value_t = 8)]
        queue_depth: usize,
        /// Bytes per READ/WRITE.
        #[arg(long, default_value_t = 4 << 20)]
        io_size: u64,
    },
    /// copy_file_range(2) from one backing file to another.
    Direct {
        #[arg(long)]
        src: PathBuf,
        #[arg(long)]
        dst: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct Iscsi {
    /// Our initiator name.
    #[arg(short = 'i', long = "initiator-name", default_value = "iqn.2026-11.dev.oxcopy:copy-bench")]
    initiator: String,
    /// iscsi://host:port/target-iqn
    url: String,
    #[arg(long, default_value_t = 0)]
    src_lun: u64,
    #[arg(long, default_value_t = 1)]
    dst_lun: u64,
}

fn report(mode: &str, bytes: u64, secs: f64) {
    let mib_s = bytes as f64 / (1 << 20) as f64 / secs.max(1e-9);
    println!("RESULT mode={mode} bytes={bytes} secs={secs:.6} mib_s={mib_s:.1}");
}

async fn connect(i: &Iscsi) -> Result<Session> {
    oxcopy_bench::connect(&i.url, &i.initiator).await
}

/// EXTENDED COPY of the whole source LUN, in commands of 64 segments of 1 GiB.
async fn xcopy(i: &Iscsi) -> Result<()> {
    let s = connect(i).await?;
    let (blocks, bs) = s.read_capacity16(i.src_lun).await?;
    let (dblocks, dbs) = s.read_capacity16(i.dst_lun).await?;
    let len = blocks * u64::from(bs);
    if dblocks * u64::from(dbs) < len {
        bail!("destination LUN is smaller than the source");
    }
    let src = s.lu_designator(i.src_lun).await?;
    let dst = s.lu_designator(i.dst_lun).await?;
    let per_segment: u64 = 1 << 30;
    let t = Instant::now();
    let mut done = 0u64;
    while done < len {
        let mut segments = Vec::new();
        while done < len && segments.len() < 64 {
            let n = (len - done).min(per_segment);
            segments.push(Segment::BlockToBlockOffset {
                src: 0,
                dst: 1,
                bytes: n as u32,
                src_lba: done / u64::from(bs),
                dst_lba: done / u64::from(dbs),
                src_offset: 0,
                dst_offset: 0,
            });
            done += n;
        }
        let list = ParamList {
            list_id: 0,
            usage: ListIdUsage::None,
            cscds: vec![Cscd::new(src.clone(), 0), Cscd::new(dst.clone(), 0)],
            segments,
        };
        let o = s.extended_copy(i.src_lun, &list).await?;
        if !o.is_good() {
            bail!("EXTENDED COPY failed: status {:#x} sense {:?}", o.status, o.sense_info());
        }
    }
    report("xcopy", len, t.elapsed().as_secs_f64());
    s.logout().await?;
    Ok(())
}

/// READ then WRITE every chunk, `qd` chunks in flight.
async fn host(i: &Iscsi, qd: usize, io_size: u64) -> Result<()> {
    let s = connect(i).await?;
    let (blocks, bs) = s.read_capacity16(i.src_lun).await?;
    let (_, dbs) = s.read_capacity16(i.dst_lun).await?;
    if bs != dbs {
        bail!("host copy needs equal block sizes");
    }
    let len = blocks * u64::from(bs);
    let io = (io_size / u64::from(bs)).max(1) * u64::from(bs);
    let next = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..qd.max(1) {
        let (s, next, i_src, i_dst) = (s.clone(), next.clone(), i.src_lun, i.dst_lun);
        tasks.spawn(async move {
            loop {
                let off = next.fetch_add(io, Ordering::Relaxed);
                if off >= len {
                    return Ok::<(), anyhow::Error>(());
                }
                let n = (len - off).min(io);
                let lba = off / u64::from(bs);
                let data: Bytes = s.read16(i_src, lba, (n / u64::from(bs)) as u32, bs).await?;
                s.write16(i_dst, lba, data, bs, false).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    report("host", len, t.elapsed().as_secs_f64());
    s.logout().await?;
    Ok(())
}

fn direct(src: &PathBuf, dst: &PathBuf) -> Result<()> {
    let s = std::fs::File::open(src).with_context(|| format!("open {}", src.display()))?;
    let d = std::fs::OpenOptions::new().write(true).open(dst).with_context(|| format!("open {}", dst.display()))?;
    let len = s.metadata()?.len();
    let t = Instant::now();
    let (mut so, mut doff) = (0u64, 0u64);
    while so < len {
        let want = (len - so).min(1 << 30) as usize;
        let n = rustix::fs::copy_file_range(&s, Some(&mut so), &d, Some(&mut doff), want)
            .with_context(|| format!("copy_file_range at {so}"))?;
        if n == 0 {
            bail!("copy_file_range stopped at {so} of {len}");
        }
    }
    report("direct", len, t.elapsed().as_secs_f64());
    Ok(())
}

fn fill(file: &PathBuf, size: Option<u64>) -> Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(file).with_context(|| format!("open {}", file.display()))?;
    let len = match size {
        Some(n) => n,
        None => f.metadata()?.len(),
    };
    let chunk: usize = 16 << 20;
    let mut buf = vec![0u8; chunk];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let t = Instant::now();
    let mut off = 0u64;
    while off < len {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&(x | 1).to_le_bytes());
        }
        let n = (len - off).min(chunk as u64) as usize;
        f.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    f.sync_all()?;
    report("fill", len, t.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.cmd {
        Cmd::Fill { file, size } => fill(&file, size),
        Cmd::Direct { src, dst } => direct(&src, &dst),
        Cmd::Xcopy(i) => tokio::runtime::Runtime::new()?.block_on(xcopy(&i)),
        Cmd::Host { iscsi, queue_depth, io_size } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(host(&iscsi, queue_depth, io_size)),
    }
}
