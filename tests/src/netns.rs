//! Simulated internets on one machine, made of Linux network namespaces: a "public" segment (a
//! bridge in a namespace of its own), hosts on it, NAT routers with a home network behind each
//! (`MASQUERADE`, or `MASQUERADE --random-fully` for a NAT that randomises ports), and hosts
//! behind them.
//!
//! Everything is named with this internet's prefix and removed when it is dropped, also when a
//! test fails; namespaces a killed test process left behind are removed by the next one. Only
//! addresses of the benchmarking range 198.18.0.0/15 (public) and 10.x.0.0/24 (homes) are used,
//! on links that exist only inside these namespaces: nothing reaches off the machine.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace of a test internet starts with this, then the owning process id.
const PREFIX: &str = "agn";
/// The public segment: 198.18.0.0/24.
const PUBLIC: [u8; 3] = [198, 18, 0];

static INTERNETS: AtomicU32 = AtomicU32::new(0);

/// A host: the namespace it lives in and its address.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
}

impl Host {
    /// A command run inside this host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// Whether one ICMP echo to `to` comes back within a second (busybox's ping: Debian's
    /// `busybox-static`, which `scripts/setup` installs).
    pub fn pings(&self, to: Ipv4Addr) -> bool {
        let out = self.command("busybox").args(["ping", "-c", "1", "-W", "1", &to.to_string()]).output();
        out.is_ok_and(|o| o.status.success())
    }
}

/// A NAT router: its public address, and the home network behind it.
#[derive(Debug, Clone)]
pub struct Nat {
    pub router: Host,
    home: u8,
    hosts: u8,
}

/// One simulated internet. Dropping it removes every namespace it made.
#[derive(Debug)]
pub struct Internet {
    id: u32,
    prefix: String,
    public: String,
    namespaces: Vec<String>,
    next_public: u8,
    next_home: u8,
    links: u32,
}

impl Internet {
    /// A public segment, empty. Fails loudly, with the reason, where namespaces cannot be made.
    pub fn new() -> Self {
        sweep_stale();
        let id = INTERNETS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX}{}x{id}", std::process::id());
        let public = format!("{prefix}pub");
        let mut internet = Self {
            id,
            prefix,
            public: public.clone(),
            namespaces: Vec::new(),
            next_public: 1,
            next_home: 1,
            links: 0,
        };
        internet.namespace(&public);
        internet.run(&public, &["ip", "link", "add", "br0", "type", "bridge"]);
        internet.run(&public, &["ip", "link", "set", "br0", "up"]);
        internet
    }

    /// A host with a public address.
    pub fn public_host(&mut self, name: &str) -> Host {
        let ns = self.namespace(&format!("{}{name}", self.prefix));
        let ip = self.public_ip();
        let (outside, inside) = self.veth();
        self.plug(&outside, &inside, &self.public.clone(), &ns, "eth0");
        self.run(&ns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        Host { ns, ip }
    }

    /// A NAT router on the public segment with an empty home network behind it; with
    /// `random_ports`, it picks a random source port for every mapping, as NATs that defeat hole
    /// punching do.
    pub fn nat(&mut self, name: &str, random_ports: bool) -> Nat {
        let router = self.public_host(name);
        let home = self.next_home;
        self.next_home += 1;
        let ns = &router.ns;
        self.run(ns, &["ip", "link", "add", "br1", "type", "bridge"]);
        self.run(ns, &["ip", "link", "set", "br1", "up"]);
        self.run(ns, &["ip", "addr", "add", &format!("10.{home}.0.1/24"), "dev", "br1"]);
        self.run(ns, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        let mut masquerade =
            vec!["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE"];
        if random_ports {
            masquerade.push("--random-fully");
        }
        self.run(ns, &masquerade);
        Nat { router, home, hosts: 1 }
    }

    /// A host in the home network behind `nat`, its default route through the router.
    pub fn host_behind(&mut self, nat: &mut Nat, name: &str) -> Host {
        let ns = self.namespace(&format!("{}{name}", self.prefix));
        nat.hosts += 1;
        let ip = Ipv4Addr::new(10, nat.home, 0, nat.hosts);
        let (outside, inside) = self.veth();
        self.plug(&outside, &inside, &nat.router.ns.clone(), &ns, "eth0");
        self.run(&nat.router.ns, &["ip", "link", "set", &outside, "master", "br1"]);
        self.run(&ns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        self.run(&ns, &["ip", "route", "add", "default", "via", &format!("10.{}.0.1", nat.home)]);
        Host { ns, ip }
    }

    /// The namespaces this internet made.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    fn public_ip(&mut self) -> Ipv4Addr {
        let n = self.next_public;
        self.next_public += 1;
        Ipv4Addr::new(PUBLIC[0], PUBLIC[1], PUBLIC[2], n)
    }

    fn namespace(&mut self, name: &str) -> String {
        let made = Command::new("ip").args(["netns", "add", name]).output();
        match made {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "cannot make network namespace {name} ({}): these tests need root and `ip netns`",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("cannot run `ip` to make network namespace {name}: {e}; install iproute2"),
        }
        self.namespaces.push(name.to_string());
        self.run(name, &["ip", "link", "set", "lo", "up"]);
        name.to_string()
    }

    /// A fresh veth pair in the root namespace, named from this internet (at most 15 bytes).
    fn veth(&mut self) -> (String, String) {
        self.links += 1;
        // Unique on the machine while it is in the root namespace: process, internet, link.
        let base = format!("v{}-{}-{}", std::process::id() % 100_000, self.id, self.links);
        let (outside, inside) = (format!("{base}a"), format!("{base}b"));
        let made = Command::new("ip")
            .args(["link", "add", &outside, "type", "veth", "peer", "name", &inside])
            .output()
            .expect("`ip link add` runs");
        assert!(made.status.success(), "veth {outside}: {}", String::from_utf8_lossy(&made.stderr));
        (outside, inside)
    }

    /// Moves a veth pair's ends into their namespaces: `outside` on the bridge of `hub` (`br0` on
    /// the public segment, a router's home bridge is attached by the caller), `inside` as `name`.
    fn plug(&self, outside: &str, inside: &str, hub: &str, ns: &str, name: &str) {
        for (link, target) in [(outside, hub), (inside, ns)] {
            let moved =
                Command::new("ip").args(["link", "set", link, "netns", target]).output().expect("`ip` runs");
            assert!(moved.status.success(), "moving {link}: {}", String::from_utf8_lossy(&moved.stderr));
        }
        if hub == self.public {
            self.run(hub, &["ip", "link", "set", outside, "master", "br0"]);
        }
        self.run(hub, &["ip", "link", "set", outside, "up"]);
        self.run(ns, &["ip", "link", "set", inside, "name", name]);
        self.run(ns, &["ip", "link", "set", name, "up"]);
    }

    fn run(&self, ns: &str, args: &[&str]) {
        let out =
            Command::new("ip").args(["netns", "exec", ns]).args(args).output().expect("`ip netns exec` runs");
        assert!(
            out.status.success(),
            "in {ns}: {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Default for Internet {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        // Deleting a namespace deletes the links in it, and with each veth its peer.
        for ns in self.namespaces.iter().rev() {
            let _gone = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Removes the namespaces of test processes that are gone (killed before their drop ran).
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let alive = pid.parse::<u32>().is_ok_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _gone = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}
