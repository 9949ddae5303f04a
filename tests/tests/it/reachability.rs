//! The simulated internets that reachability is tested on: hosts on a public segment reach each
//! other, hosts behind NATs reach the public segment but cannot be reached from it, and every
//! namespace is gone when the internet is dropped.

use agora_tests::netns::Internet;

#[test]
fn a_simulated_internet_has_public_hosts_and_nats_that_only_let_their_hosts_out() {
    let made;
    {
        let mut net = Internet::new();
        let relay = net.public_host("relay");
        let other = net.public_host("other");
        let mut home_a = net.nat("nata", false);
        let mut home_b = net.nat("natb", true);
        let a = net.host_behind(&mut home_a, "a");
        let b = net.host_behind(&mut home_b, "b");
        assert!(relay.pings(other.ip), "two public hosts reach each other");
        assert!(a.pings(relay.ip), "a host behind a NAT reaches the public segment");
        assert!(b.pings(relay.ip), "also behind a NAT that randomises ports");
        assert!(!relay.pings(a.ip), "a public host cannot reach into a home network");
        assert!(!a.pings(b.ip), "nor can one home reach into another");
        // The relay sees the NAT's public address, not the host's.
        let seen = relay.command("ip").args(["neigh", "show"]).output().unwrap();
        let seen = String::from_utf8_lossy(&seen.stdout);
        assert!(seen.contains(&home_a.router.ip.to_string()), "{seen}");
        assert!(!seen.contains(&a.ip.to_string()), "{seen}");
        made = net.namespaces().to_vec();
    }
    let left = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    for ns in &made {
        assert!(!left.lines().any(|l| l.split_whitespace().next() == Some(ns)), "{ns} is left: {left}");
    }
}
