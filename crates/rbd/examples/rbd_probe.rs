//! Quick timing probe against a cluster: `cargo run -p oxcopy-rbd --features ceph
//! --example rbd_probe -- CEPH_CONF IMAGE` (creates IMAGE as a 1 TiB thin image).
use std::time::Instant;

use oxcopy_rbd::{RbdOptions, RbdStorage};
use oxcopy_storage::Storage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(conf), Some(image)) = (args.next(), args.next()) else {
        return Err("usage: rbd_probe CEPH_CONF IMAGE".into());
    };
    let mut o = RbdOptions::new(conf, "rbd", image);
    o.create_size = Some(1 << 40);
    o.exclusive = true;
    let t = Instant::now();
    let s = RbdStorage::open(&o)?;
    println!("open: {:?}", t.elapsed());
    let buf = vec![7u8; 64 << 20];
    let t = Instant::now();
    s.write_at(&buf, 3 << 30)?;
    println!("write 64 MiB: {:?}", t.elapsed());
    let mut rb = vec![0u8; 64 << 20];
    let t = Instant::now();
    s.read_at(&mut rb, 3 << 30)?;
    println!("read 64 MiB: {:?} equal={}", t.elapsed(), rb == buf);
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..1000 {
        s.read_at(&mut rb[..4096], 3 << 30)?;
        n += 1;
    }
    println!("{n} x 4K sync reads: {:?}", t.elapsed());
    let mut at = 0u64;
    let t = Instant::now();
    let mut runs = 0;
    while at < (8 << 30) {
        let r = s.allocation(at, s.len() - at)?;
        println!("  run at {at}: {r:?}");
        at += r.len;
        runs += 1;
    }
    println!("allocation walk of 8 GiB: {runs} runs in {:?}", t.elapsed());
    Ok(())
}
