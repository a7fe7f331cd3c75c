//! The suite's SVG plots (plotters): drop rate vs sources, ns/packet vs message length and UA
//! position, load time and memory vs list size, lookup cost vs list size. A plot that cannot be
//! drawn (no valid points) is skipped and said so.
use std::path::Path;

use anyhow::{bail, Result};
use plotters::prelude::*;

use super::scaling::Scaling;
use super::Sources;

type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// A line chart with points; `log_x` for counts spanning decades.
fn chart(path: &Path, title: &str, x_desc: &str, y_desc: &str, log_x: bool, series: &[Series<'_>]) -> Result<()> {
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.2.iter().copied()).filter(|p| p.1.is_finite()).collect();
    if pts.is_empty() {
        bail!("no valid points");
    }
    let (xmin, xmax) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let ymax = pts.iter().map(|p| p.1).fold(0.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut b = ChartBuilder::on(&root);
    b.caption(title, ("sans-serif", 18)).margin(12).x_label_area_size(44).y_label_area_size(64);
    macro_rules! draw {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw()?;
            for (name, color, data) in series {
                let data: Vec<(f64, f64)> = data.iter().copied().filter(|p| p.1.is_finite()).collect();
                let style = ShapeStyle::from(color).stroke_width(2);
                c.draw_series(LineSeries::new(data.clone(), style))?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
                c.draw_series(data.iter().map(|p| Circle::new(*p, 3, style.filled())))?;
            }
            c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        }};
    }
    if log_x {
        draw!(b.build_cartesian_2d((xmin.max(0.5)..xmax * 1.5).log_scale(), 0.0..ymax)?);
    } else {
        let pad = (xmax - xmin).max(1.0) * 0.05;
        draw!(b.build_cartesian_2d((xmin - pad)..(xmax + pad), 0.0..ymax)?);
    }
    root.present()?;
    Ok(())
}

/// Draw every plot into `dir`; returns the file names written (failures are printed).
pub fn draw(dir: &Path, _s: &Sources, sc: &Scaling) -> Vec<String> {
    let mut written = vec![];
    let mut one = |name: &str, r: Result<()>| match r {
        Ok(()) => written.push(name.to_string()),
        Err(e) => eprintln!("suite: plot {name} skipped: {e:#}"),
    };
    let by_list = |f: &dyn Fn(&super::scaling::ListPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        sc.list_size.iter().filter_map(|p| f(p).map(|y| (p.entries as f64, y))).collect()
    };
    one(
        "load_time_vs_list_size.svg",
        chart(
            &dir.join("load_time_vs_list_size.svg"),
            "Blacklist load time (list file to live filter) vs list size",
            "entries (/32s + 1% ranges)",
            "seconds",
            true,
            &[
                ("sipshield parse + load", BLUE, by_list(&|p| Some(p.parse_load_secs))),
                ("ipset restore", RED, by_list(&|p| p.ipset_secs)),
                ("nft -f", MAGENTA, by_list(&|p| p.nft_secs)),
            ],
        ),
    );
    one(
        "memory_vs_list_size.svg",
        chart(
            &dir.join("memory_vs_list_size.svg"),
            "sipshield kernel memory per blacklist entry (both generations) vs list size",
            "entries",
            "bytes per entry",
            true,
            &[("all blacklist maps + slab delta", BLUE, by_list(&|p| p.bytes_per_entry))],
        ),
    );
    one(
        "lookup_vs_list_size.svg",
        chart(
            &dir.join("lookup_vs_list_size.svg"),
            "Blacklist lookup, cold median, vs list size",
            "entries",
            "ns per packet",
            true,
            &[
                ("unlisted source: + ns over empty lists", BLUE, by_list(&|p| p.miss_plus_ns)),
                ("listed /32 (drop): ns", RED, by_list(&|p| p.hit_ns)),
            ],
        ),
    );
    let per_src = |f: &dyn Fn(&super::scaling::SourcePoint) -> f64| -> Vec<(f64, f64)> {
        sc.sources.iter().map(|p| (p.sources as f64, 1e3 / f(p))).collect()
    };
    one(
        "drop_rate_vs_sources.svg",
        chart(
            &dir.join("drop_rate_vs_sources.svg"),
            "Per-core rate (1e9 / ns per packet) vs distinct sources, 1M list + 10k ranges",
            "distinct sources",
            "Mpps per core",
            true,
            &[
                ("listed source dropped", RED, per_src(&|p| p.hit_ns)),
                ("unlisted source passed", BLUE, per_src(&|p| p.miss_ns)),
                ("empty lists", BLACK, per_src(&|p| p.empty_ns)),
            ],
        ),
    );
    let live = |f: &dyn Fn(&super::scaling::LivePoint) -> f64| -> Vec<(f64, f64)> {
        sc.live_sources.iter().map(|p| (p.sources as f64, f(p))).collect()
    };
    one(
        "live_drop_rate_vs_sources.svg",
        chart(
            &dir.join("live_drop_rate_vs_sources.svg"),
            "Live blacklist drops vs distinct sources (400k list, live frames over veth)",
            "distinct sources",
            "Mpps (incl. the generator + veth floor)",
            true,
            &[
                ("sipshield", BLUE, live(&|p| p.sipshield_mpps)),
                ("iptables raw + ipset", RED, live(&|p| p.iptables_ipset_mpps)),
                ("nftables netdev ingress set", MAGENTA, live(&|p| p.nft_netdev_mpps)),
            ],
        ),
    );
    let scan: Vec<(f64, f64)> =
        sc.message.iter().filter(|m| m.case.starts_with("scanner")).map(|m| (m.msg_bytes as f64, m.ns)).collect();
    let legit: Vec<(f64, f64)> =
        sc.message.iter().filter(|m| !m.case.starts_with("scanner")).map(|m| (m.msg_bytes as f64, m.ns)).collect();
    one(
        "sip_cost_vs_message.svg",
        chart(
            &dir.join("sip_cost_vs_message.svg"),
            "SIP path ns/packet vs message length (scanner UA near the end of each message)",
            "message bytes (UA at 34 / 500 / 1200 B for the scanner cases)",
            "ns per packet",
            false,
            &[("scanner drop", RED, scan), ("legitimate REGISTER (UA last)", BLUE, legit)],
        ),
    );
    written
}
