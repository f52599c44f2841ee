//! Health-check CPU: 10 000 TCP real servers, each probed every second by the
//! director's own monitor, against one listener; measured as CPU time of the
//! process. The listener and the monitor share one kernel, which runs both ends
//! of every handshake in the prober's context, so the same connects made
//! blocking from one thread (connect, reset) are measured too: the kernel's
//! floor, both ends included.
//!
//! Everything runs in a network namespace of its own (`unshare(CLONE_NEWNET)`
//! on a thread that then starts the runtime): the probes never touch the
//! host's loopback, and the namespace goes with the thread.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use director::config;
use director::health::{Health, Monitor, Target};
use director_tests::config::{Config, VirtualServer};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{Scale, progress};

pub const TARGETS: usize = 10_000;

#[derive(Clone, Debug, Serialize)]
pub struct HealthCpu {
    pub targets: usize,
    pub probes_per_s: f64,
    /// Cores (CPU seconds per second) of the whole process.
    pub process_cores: f64,
    /// Of which the listener thread (the real servers' side in userspace).
    pub listener_cores: f64,
    /// The kernel's floor for as many probes per second (both ends).
    pub floor_cores: f64,
    pub failures: u64,
}

impl HealthCpu {
    /// The monitor: the process without the listener thread.
    pub fn monitor_cores(&self) -> f64 {
        self.process_cores - self.listener_cores
    }
}

pub fn run(scale: &Scale) -> Result<HealthCpu> {
    progress(&format!(
        "health: {TARGETS} TCP servers probed every second, {:?} measured",
        scale.health_time
    ));
    let time = scale.health_time;
    std::thread::spawn(move || in_own_netns(time))
        .join()
        .map_err(|_| anyhow::anyhow!("the health-check thread panicked"))?
}

fn in_own_netns(time: Duration) -> Result<HealthCpu> {
    // SAFETY: plain syscalls on this thread; threads it starts inherit the
    // namespace.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        }
    }
    lo_up()?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    // std listens with a backlog of 128: a second's burst of probes would
    // overflow it. listen(2) again raises it.
    // SAFETY: plain syscall on a socket we own.
    ensure!(
        unsafe { libc::listen(listener.as_raw_fd(), 4096) } == 0,
        "listen"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let listener_us = Arc::new(AtomicU64::new(0));
    let accept = {
        let (stop, cpu) = (stop.clone(), listener_us.clone());
        std::thread::spawn(move || {
            while let Ok((conn, _)) = listener.accept() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                drop(conn);
                let (u, s) = cpu_times(libc::RUSAGE_THREAD);
                cpu.store((u + s).as_micros() as u64, Ordering::Relaxed);
            }
        })
    };
    let measured = measure(addr, time, &listener_us).and_then(|mut m| {
        m.floor_cores = floor(addr)? * m.probes_per_s;
        Ok(m)
    });
    stop.store(true, Ordering::Relaxed);
    // Wakes the blocking accept.
    let _ = TcpStream::connect(addr);
    let _ = accept.join();
    measured
}

fn measure(addr: SocketAddr, time: Duration, listener_us: &AtomicU64) -> Result<HealthCpu> {
    let text = Config::new(&["lo"])
        .virtual_server(
            VirtualServer::tcp("v", SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10), 80)))
                .real_servers([addr])
                .health_check("kind", "tcp")
                .health_check("interval", "1s")
                .health_check("timeout", "1s"),
        )
        .to_toml();
    let loaded = config::parse(&text, "health-bench.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    let check = loaded.config.virtual_servers[0]
        .health_check
        .clone()
        .context("the health check of the bench configuration")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (tx, _events) = mpsc::unbounded_channel();
        let mut monitor = Monitor::new(tx);
        monitor.set_targets(
            (0..TARGETS)
                .map(|i| Target {
                    vs: format!("vs{i}"),
                    server: addr,
                    check: check.clone(),
                })
                .collect(),
        );
        // Every target has made its first probe after one interval.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let checks = |m: &Monitor| m.status().iter().map(|s| s.checks).sum::<u64>();
        let (cpu0, lis0, checks0) = (
            cpu_times(libc::RUSAGE_SELF),
            listener_us.load(Ordering::Relaxed),
            checks(&monitor),
        );
        let start = Instant::now();
        tokio::time::sleep(time).await;
        let wall = start.elapsed().as_secs_f64();
        let (cpu1, lis1, checks1) = (
            cpu_times(libc::RUSAGE_SELF),
            listener_us.load(Ordering::Relaxed),
            checks(&monitor),
        );
        let status = monitor.status();
        let down = status.iter().filter(|s| s.health == Health::Down).count();
        ensure!(down == 0, "{down} of {TARGETS} servers went down");
        let cpu = (cpu1.0 + cpu1.1) - (cpu0.0 + cpu0.1);
        Ok(HealthCpu {
            targets: TARGETS,
            probes_per_s: (checks1 - checks0) as f64 / wall,
            process_cores: cpu.as_secs_f64() / wall,
            listener_cores: (lis1 - lis0) as f64 / 1e6 / wall,
            floor_cores: 0.0,
            failures: status.iter().map(|s| s.failures).sum(),
        })
    })
}

/// CPU seconds of one blocking connect closed with a reset (as the tcp
/// probe closes), both ends in this thread's context.
fn floor(addr: SocketAddr) -> Result<f64> {
    std::thread::spawn(move || -> Result<f64> {
        let before = cpu_times(libc::RUSAGE_THREAD);
        for _ in 0..TARGETS {
            let conn = TcpStream::connect(addr)?;
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt reads `size_of::<linger>()` bytes from the pointer.
            let rc = unsafe {
                libc::setsockopt(
                    conn.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&raw const linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            ensure!(rc == 0, "SO_LINGER: {}", std::io::Error::last_os_error());
        }
        let after = cpu_times(libc::RUSAGE_THREAD);
        Ok(((after.0 + after.1) - (before.0 + before.1)).as_secs_f64() / TARGETS as f64)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the floor thread panicked"))?
}

/// Brings up the new namespace's loopback (SIOCSIFFLAGS on a socket of it).
fn lo_up() -> Result<()> {
    // Binding needs no interface up; the ioctl needs a socket of the namespace.
    let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    // SAFETY: ifreq is plain data; the ioctls read and write one.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        ensure!(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) == 0,
            "SIOCGIFFLAGS lo: {}",
            std::io::Error::last_os_error()
        );
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        ensure!(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) == 0,
            "SIOCSIFFLAGS lo: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn cpu_times(who: libc::c_int) -> (Duration, Duration) {
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}
