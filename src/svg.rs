//! `align report --svg`: a picture of per-layer channel widths before and
//! after alignment. One row per conv or dense layer: a solid bar for
//! the channels the model has, a lighter extension for the zero channels
//! align adds, a tick every multiple; pinned dims are drawn in orange with
//! their reason in the tooltip.

use crate::ops::LayerKind;
use crate::report::{DimReport, Report};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders the report of `title` as a standalone SVG document.
pub fn render(r: &Report, title: &str) -> String {
    let rows: Vec<_> = r.layers.iter().filter(|l| l.kind != LayerKind::Norm).collect();
    let max_c = rows
        .iter()
        .flat_map(|l| [&l.in_dim, &l.out_dim])
        .flatten()
        .map(|d| d.aligned_to.max(d.channels))
        .chain(rows.iter().map(|l| l.out_channels))
        .max()
        .unwrap_or(8)
        .max(8) as f64;
    let (label_w, bar_w, row_h, top) = (300.0, 420.0, 22.0, 92.0);
    let col = |i: usize| label_w + i as f64 * (bar_w + 40.0);
    let width = col(2) + 20.0;
    let height = top + rows.len() as f64 * row_h + 30.0;
    let scale = (bar_w - 80.0) / max_c; // room for the label after the longest bar
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="12" y="24" font-size="16" font-weight="bold">{}</text>
<text x="12" y="44" fill="#444">channel widths per layer, aligned to multiples of {}: {} free dim(s) padded, {} pinned ({} unaligned); params {:+.1}%, MACs {:+.1}%</text>
<g transform="translate(12,58)"><rect width="14" height="10" fill="#3b6fb6"/><text x="18" y="9">channels in the model</text>
<rect x="170" width="14" height="10" fill="#a9c4ea"/><text x="188" y="9">zero channels added</text>
<rect x="330" width="14" height="10" fill="#e8902a"/><text x="348" y="9">pinned (exact width kept; hover for why)</text>
<rect x="600" width="14" height="10" fill="#c0392b"/><text x="618" y="9">free and unaligned</text></g>
<text x="{}" y="{}" font-weight="bold">input channels</text><text x="{}" y="{}" font-weight="bold">output channels</text>
"##,
        esc(title),
        r.multiple,
        r.totals.free_unaligned,
        r.totals.pinned,
        r.totals.pinned_unaligned,
        pct(r.totals.params, r.totals.params_aligned),
        pct(r.totals.macs, r.totals.macs_aligned),
        col(0),
        top - 8.0,
        col(1),
        top - 8.0,
    );
    for (i, l) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        if i % 2 == 0 {
            s += &format!(r##"<rect x="0" y="{}" width="{width}" height="{row_h}" fill="#f4f6f9"/>"##, y - 2.0);
        }
        let name: String = if l.node.chars().count() > 42 {
            format!("…{}", l.node.chars().rev().take(41).collect::<Vec<_>>().into_iter().rev().collect::<String>())
        } else {
            l.node.clone()
        };
        s += &format!(
            r##"<text x="12" y="{}"><title>{}</title>{} <tspan fill="#777">{}</tspan></text>"##,
            y + 13.0,
            esc(&l.node),
            esc(&name),
            esc(&l.op)
        );
        let dims = [(&l.in_dim, l.in_channels), (&l.out_dim, l.out_channels)];
        for (k, (d, c)) in dims.iter().enumerate() {
            s += &bar(col(k), y + 3.0, d.as_ref(), *c, scale, r.multiple);
        }
    }
    s += "</svg>\n";
    s
}

fn pct(a: u64, b: u64) -> f64 {
    if a == 0 {
        0.0
    } else {
        (b as f64 - a as f64) / a as f64 * 100.0
    }
}

fn bar(x: f64, y: f64, d: Option<&DimReport>, c: usize, scale: f64, multiple: usize) -> String {
    let h = 14.0;
    let (c, after, pinned, why) = match d {
        Some(d) => {
            let reasons = if d.unanalysed.is_empty() {
                d.pinned.join("; ")
            } else {
                format!("UNANALYSED {}", d.unanalysed.join("; "))
            };
            (
                d.channels,
                d.aligned_to,
                d.status() != crate::report::DimStatus::Free && d.aligned_to == d.channels,
                reasons,
            )
        }
        None => (c, c, false, String::new()),
    };
    let unaligned_left = after == c && !c.is_multiple_of(multiple) && !pinned;
    let fill = if pinned && !c.is_multiple_of(multiple) {
        "#e8902a"
    } else if unaligned_left {
        "#c0392b"
    } else {
        "#3b6fb6"
    };
    let mut s = format!(
        r#"<rect x="{x}" y="{y}" width="{:.1}" height="{h}" fill="{fill}"><title>{c} channels{}</title></rect>"#,
        c as f64 * scale,
        if why.is_empty() { String::new() } else { format!(" — pinned: {}", esc(&why)) }
    );
    if after > c {
        s += &format!(
            r##"<rect x="{:.1}" y="{y}" width="{:.1}" height="{h}" fill="#a9c4ea"><title>{} zero channels added</title></rect>"##,
            x + c as f64 * scale,
            (after - c) as f64 * scale,
            after - c
        );
    }
    let label = if after > c { format!("{c} → {after}") } else { c.to_string() };
    s += &format!(r#"<text x="{:.1}" y="{}" font-size="11">{label}</text>"#, x + after as f64 * scale + 4.0, y + 11.0);
    s
}
