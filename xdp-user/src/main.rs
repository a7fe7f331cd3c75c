fn main() -> anyhow::Result<()> {
    let mut f = sipshield::filter::Filter::load_private()?;
    let pkt = sipshield::packet::PacketBuilder::udp("198.51.100.1".parse()?, "203.0.113.1".parse()?, 5060, 5060)
        .payload(&sipshield::packet::SipMessage::request("REGISTER", "alice", "example.com").user_agent("friendly-scanner").build())
        .build();
    println!("action {}", f.test_run(&pkt)?);
    println!("{:?}", f.stats()?.reason_total(0));
    Ok(())
}
