//! GeoIP, as the kernel's `geo.rs` decides it: the country of the source (the longest network
//! of the database that holds it; 0 = unknown) and whether the policy drops it, for packets in
//! scope (every packet with `scope = "all"`, else only packets to a SIP port).
use crate::parse::Pkt;
use crate::reputation::source;
use crate::GeoPolicy;

impl GeoPolicy {
    /// Country index of `ip` (0 = not in the database).
    pub fn country_of(&self, ip: std::net::IpAddr) -> u8 {
        self.nets.iter().filter(|(n, _)| n.contains(&ip)).max_by_key(|(n, _)| n.prefix_len()).map_or(0, |(_, c)| *c)
    }
}

/// The country index when the GeoIP policy drops this packet.
pub fn denied(geo: Option<&GeoPolicy>, pkt: &Pkt, sip_port: bool) -> Option<u8> {
    let g = geo?;
    if !g.scope_all && !sip_port {
        return None;
    }
    let c = g.country_of(source(pkt));
    g.drop.contains(&c).then_some(c)
}
