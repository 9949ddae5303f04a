//! Starts service processes so that they die with the test process.
//!
//! Linux's parent-death signal (`PR_SET_PDEATHSIG`) fires when the *thread* that forked the child
//! exits. Tests spawn from whatever thread they run on, and tokio's blocking threads come and go,
//! so every child is forked by one thread that lives as long as the process.

use std::process::{Child, Command};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

type Request = (Command, nix::sys::signal::Signal, Sender<std::io::Result<Child>>);

static SPAWNER: Mutex<Option<Sender<Request>>> = Mutex::new(None);

fn spawner() -> Sender<Request> {
    let mut guard = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(|| {
            let (tx, rx) = channel::<Request>();
            std::thread::Builder::new()
                .name("agora-test-reaper".into())
                .spawn(move || {
                    for (mut cmd, signal, reply) in rx {
                        let _receiver_gone = reply.send(spawn_here(&mut cmd, signal));
                    }
                    // The sender lives in a static, so this thread only ends with the process.
                    loop {
                        std::thread::park();
                    }
                })
                .expect("spawn the reaper thread");
            tx
        })
        .clone()
}

#[allow(unsafe_code)]
fn spawn_here(cmd: &mut Command, signal: nix::sys::signal::Signal) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and takes no lock. std runs it after any uid/gid
    // change, which would otherwise clear the setting.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(signal).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn()
}

/// Spawns `cmd`; the kernel sends it `signal` when the test process exits, however it exits.
pub fn spawn(cmd: Command, signal: nix::sys::signal::Signal) -> std::io::Result<Child> {
    let (tx, rx) = channel();
    spawner().send((cmd, signal, tx)).map_err(|_| std::io::Error::other("reaper thread is gone"))?;
    rx.recv().map_err(|_| std::io::Error::other("reaper thread is gone"))?
}

/// Sends `signal` to a child and waits up to `secs` for it to exit, then kills it.
pub fn stop(
    child: &mut Child,
    signal: nix::sys::signal::Signal,
    secs: u64,
) -> Option<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _already_gone = nix::sys::signal::kill(pid, signal);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _already_gone = child.kill();
    child.wait().ok()
}

/// A child that is stopped (signal, grace period, then kill) when this guard drops, including
/// when a test panics while the service is still starting.
#[derive(Debug)]
pub struct Supervised {
    child: Child,
    signal: nix::sys::signal::Signal,
    grace_secs: u64,
}

impl Supervised {
    /// Spawns `cmd` through [`spawn`]; `signal` stops it, both on drop and at process death.
    pub fn spawn(cmd: Command, signal: nix::sys::signal::Signal, grace_secs: u64) -> std::io::Result<Self> {
        Ok(Self { child: spawn(cmd, signal)?, signal, grace_secs })
    }

    /// The exit status, if the child has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Stops the child now and returns how it exited.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        stop(&mut self.child, self.signal, self.grace_secs)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.stop();
        }
    }
}
