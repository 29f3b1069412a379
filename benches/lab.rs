//! The verification lab's controllable service in a process of its own, so the
//! throughput benchmark's prober and `wrk` probe the same server without sharing its
//! runtime (`rollback verify serve` does the same from the command line).
//!
//! Usage: `rollback-bench-lab ADDR [SCHEDULE]`; prints `serving on http://ADDR` once listening.

use rollback_core::verify::lab::{LabService, Schedule};

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into()).parse().expect("ADDR: host:port");
    let schedule = Schedule::parse(&args.next().unwrap_or_else(|| "0s=healthy".into())).expect("a schedule");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let lab = LabService::start(listen, schedule).await.expect("listen");
        println!("serving on {}", lab.url(""));
        std::future::pending::<()>().await;
    });
}
