//! `oxcopy-odx-bench`: the token-copy (ODX) measurements of `bench/odx.sh`,
//! each reported as `RESULT mode=<mode> ... secs=<x> ...` lines.
//!
//! ```text
//! oxcopy-odx-bench populate   URL --lun N --bytes B [--reps R]       # POPULATE TOKEN + RRTI of B bytes
//! oxcopy-odx-bench token-copy URL --src-lun N --dst-lun M            # PT + RRTI + WUT of the whole source LUN
//! oxcopy-odx-bench write-lat  URL --lun N --bytes B --count C --token pit|none
//!                                                                     # 4 KiB WRITE(16) latency inside [0, B)
//! ```
//!
//! `URL` is `iscsi://host:port/target-iqn`. `populate` reports the PT
//! command alone (`secs`) and PT + RRTI (`with_rrti_secs`); tokens get a 1 s
//! inactivity timeout so they do not pile up. `token-copy` reports the whole
//! operation (PT + RRTI + WUTs, the last with DEL_TKN) and the bytes on the
//! wire for it (`wire_bytes`, iSCSI headers and data both ways, from the
//! initiator's counters). `write-lat` writes `C` distinct 4 KiB blocks at
//! pseudo-random places in the first `B` bytes, one at a time, optionally
//! under a live point-in-time token over exactly that range, and reports
//! median, p99 and mean latency in µs.

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use oxcopy_initiator::odx::{BlockRange, PopulateToken, WriteUsingToken, TOKEN_LEN};
use oxcopy_initiator::Session;
use oxcopy_scsi::wire::vpd;
use std::time::{Duration, Instant};

/// ODX benchmark client.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// POPULATE TOKEN (+ RRTI) of the first `--bytes` of a LUN, `--reps` times.
    Populate {
        #[command(flatten)]
        iscsi: Iscsi,
        #[arg(long, default_value_t = 0)]
        lun: u64,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 3)]
        reps: u32,
        /// ROD type with RTV=1 (hex, e.g. 800000); default RTV=0 (the copy manager's choice, as Windows).
        #[arg(long)]
        rod_type: Option<String>,
    },
    /// Token copy of the whole source LUN to the destination LUN.
    TokenCopy {
        #[command(flatten)]
        iscsi: Iscsi,
        #[arg(long, default_value_t = 0)]
        src_lun: u64,
        #[arg(long, default_value_t = 1)]
        dst_lun: u64,
    },
    /// 4 KiB write latency, with or without a live point-in-time token over the range.
    WriteLat {
        #[command(flatten)]
        iscsi: Iscsi,
        #[arg(long, default_value_t = 0)]
        lun: u64,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 2000)]
        count: u32,
        #[arg(long, value_enum)]
        token: TokenMode,
        /// Seed of the write positions (use a different one per run: each block is protected once).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// With `--token pit`: the LUN (same block size) that one block is written to with
        /// DEL_TKN afterwards, which deletes the token so it protects nothing in later runs.
        #[arg(long, default_value_t = 1)]
        scratch_lun: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TokenMode {
    None,
    Pit,
}

#[derive(clap::Args, Debug)]
struct Iscsi {
    /// Our initiator name.
    #[arg(short = 'i', long = "initiator-name", default_value = "iqn.2026-11.dev.oxcopy:odx-bench")]
    initiator: String,
    /// iscsi://host:port/target-iqn
    url: String,
}

async fn connect(i: &Iscsi) -> Result<Session> {
    oxcopy_bench::connect(&i.url, &i.initiator).await
}

/// `blocks` from `lba` as range descriptors of at most `max` blocks.
fn ranges(lba: u64, blocks: u64, max: u64) -> Vec<BlockRange> {
    let max = max.clamp(1, u64::from(u32::MAX));
    let mut v = Vec::new();
    let mut done = 0;
    while done < blocks {
        let n = (blocks - done).min(max);
        v.push(BlockRange { lba: lba + done, blocks: n as u32 });
        done += n;
    }
    v
}

/// MAXIMUM TOKEN TRANSFER SIZE (blocks; `u64::MAX` when not reported) from VPD 8Fh/0000h.
async fn max_token_blocks(s: &Session, lun: u64) -> Result<u64> {
    let p = s.inquiry(lun, true, vpd::VpdPage::THIRD_PARTY_COPY, 255).await?;
    let Some(l) = vpd::tpc_descriptors(&p)
        .next()
        .filter(|(ty, _)| *ty == vpd::TpcDescriptor::BLOCK_DEVICE_ROD_TOKEN_LIMITS)
        .and_then(|(_, body)| vpd::BlockRodLimits::decode(body))
    else {
        bail!("VPD 8Fh does not start with the ROD token limits descriptor");
    };
    let m = l.max_token_transfer_size;
    Ok(if m == 0 { u64::MAX } else { m })
}

/// PT (must be GOOD) then RRTI; the token.
async fn populate(s: &Session, lun: u64, list_id: u32, pt: &PopulateToken) -> Result<[u8; TOKEN_LEN]> {
    let o = s.populate_token(lun, list_id, pt).await?;
    if !o.is_good() {
        bail!("POPULATE TOKEN: status {:#x} sense {:?}", o.status, o.sense_info());
    }
    rrti_token(s, lun, list_id).await
}

async fn rrti_token(s: &Session, lun: u64, list_id: u32) -> Result<[u8; TOKEN_LEN]> {
    for _ in 0..10_000 {
        let i = s.receive_rod_token_information(lun, list_id).await?;
        if !i.in_progress() {
            return i.token.ok_or_else(|| anyhow!("RRTI without a token: {i:?}"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("POPULATE TOKEN still in progress after 10000 polls")
}

fn parse_hex(s: &str) -> Result<u32> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).with_context(|| format!("ROD type {s:?}"))
}

async fn populate_bench(i: &Iscsi, lun: u64, bytes: u64, reps: u32, rod_type: Option<u32>) -> Result<()> {
    let s = connect(i).await?;
    let (_, bs) = s.read_capacity16(lun).await?;
    let max = max_token_blocks(&s, lun).await?;
    let blocks = bytes / u64::from(bs);
    if blocks > max {
        bail!("{bytes} bytes exceed the MAXIMUM TOKEN TRANSFER SIZE ({max} blocks)");
    }
    for r in 0..reps {
        let pt = PopulateToken { rod_type, inactivity_timeout: 1, ranges: ranges(0, blocks, u64::MAX), immed: false };
        let list_id = 0x1000 + r;
        let t = Instant::now();
        let o = s.populate_token(lun, list_id, &pt).await?;
        let pt_secs = t.elapsed().as_secs_f64();
        if !o.is_good() {
            bail!("POPULATE TOKEN: status {:#x} sense {:?}", o.status, o.sense_info());
        }
        rrti_token(&s, lun, list_id).await?;
        let all = t.elapsed().as_secs_f64();
        println!("RESULT mode=populate bytes={bytes} secs={pt_secs:.6} with_rrti_secs={all:.6}");
    }
    s.logout().await?;
    Ok(())
}

async fn token_copy(i: &Iscsi, src_lun: u64, dst_lun: u64) -> Result<()> {
    let s = connect(i).await?;
    let (blocks, bs) = s.read_capacity16(src_lun).await?;
    let (dblocks, dbs) = s.read_capacity16(dst_lun).await?;
    let len = blocks * u64::from(bs);
    if dblocks * u64::from(dbs) < len {
        bail!("destination LUN is smaller than the source");
    }
    let max = max_token_blocks(&s, src_lun).await?;
    let w0 = s.wire_stats();
    let t = Instant::now();
    let mut done = 0u64; // source blocks
    let mut list_id = 0x2000u32;
    let mut commands = 0;
    while done < blocks {
        let n = (blocks - done).min(max);
        let pt = PopulateToken { ranges: ranges(done, n, u64::MAX), ..Default::default() };
        let token = populate(&s, src_lun, list_id, &pt).await?;
        let dst_lba = done * u64::from(bs) / u64::from(dbs);
        let dst_blocks = n * u64::from(bs) / u64::from(dbs);
        let w = WriteUsingToken {
            del_tkn: true,
            token,
            ranges: ranges(dst_lba, dst_blocks, u64::MAX),
            ..Default::default()
        };
        let o = s.write_using_token(dst_lun, list_id + 1, &w).await?;
        if !o.is_good() {
            bail!("WRITE USING TOKEN: status {:#x} sense {:?}", o.status, o.sense_info());
        }
        commands += 3;
        done += n;
        list_id += 2;
    }
    let secs = t.elapsed().as_secs_f64();
    // The writer task counts sent bytes after its write returns, which can be
    // after the response was read: let it catch up before reading the counters.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let w1 = s.wire_stats();
    let wire = (w1.bytes_sent - w0.bytes_sent) + (w1.bytes_received - w0.bytes_received);
    let mib_s = len as f64 / (1 << 20) as f64 / secs.max(1e-9);
    println!("RESULT mode=token bytes={len} secs={secs:.6} mib_s={mib_s:.1} wire_bytes={wire} commands={commands}");
    s.logout().await?;
    Ok(())
}

async fn write_lat(
    i: &Iscsi,
    lun: u64,
    bytes: u64,
    count: u32,
    mode: TokenMode,
    seed: u64,
    scratch: u64,
) -> Result<()> {
    let s = connect(i).await?;
    let (_, bs) = s.read_capacity16(lun).await?;
    let blocks = bytes / u64::from(bs);
    let per = (4096 / bs).max(1);
    let token = if mode == TokenMode::Pit {
        let pt = PopulateToken {
            rod_type: Some(0x0080_0000),
            inactivity_timeout: 600,
            ranges: ranges(0, blocks, u64::MAX),
            immed: false,
        };
        Some(populate(&s, lun, 0x3000, &pt).await?)
    } else {
        None
    };
    // Distinct 4 KiB slots: a stride coprime to the slot count visits each once.
    let slots = blocks / u64::from(per);
    if slots < u64::from(count) {
        bail!("range too small for {count} distinct 4 KiB writes");
    }
    let mut stride = ((slots / 2 + 7919 * seed) % slots) | 1;
    while gcd(stride, slots) != 1 {
        stride += 2;
    }
    let data = Bytes::from(vec![0x5Au8; (per * bs) as usize]);
    let mut lat = Vec::with_capacity(count as usize);
    let mut slot = (seed * 104_729) % slots;
    for _ in 0..count {
        let t = Instant::now();
        s.write16(lun, slot * u64::from(per), data.clone(), bs, false).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        slot = (slot + stride) % slots;
    }
    if let Some(token) = token {
        let w = WriteUsingToken { del_tkn: true, token, ranges: ranges(0, 1, 1), ..Default::default() };
        let o = s.write_using_token(scratch, 0x3001, &w).await?;
        if !o.is_good() {
            bail!("WRITE USING TOKEN (DEL_TKN): status {:#x} sense {:?}", o.status, o.sense_info());
        }
    }
    lat.sort_by(f64::total_cmp);
    let med = lat[lat.len() / 2];
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    let tag = match mode {
        TokenMode::None => "write-none",
        TokenMode::Pit => "write-pit",
    };
    println!(
        "RESULT mode={tag} count={count} secs={:.9} median_us={med:.1} p99_us={p99:.1} mean_us={mean:.1}",
        med / 1e6
    );
    s.logout().await?;
    Ok(())
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match args.cmd {
        Cmd::Populate { iscsi, lun, bytes, reps, rod_type } => {
            let rt_type = rod_type.as_deref().map(parse_hex).transpose()?;
            rt.block_on(populate_bench(&iscsi, lun, bytes, reps, rt_type))
        }
        Cmd::TokenCopy { iscsi, src_lun, dst_lun } => rt.block_on(token_copy(&iscsi, src_lun, dst_lun)),
        Cmd::WriteLat { iscsi, lun, bytes, count, token, seed, scratch_lun } => {
            rt.block_on(write_lat(&iscsi, lun, bytes, count, token, seed, scratch_lun))
        }
    }
}
