//! `rollback-bench-plot SERIES_TSV OUT_DIR`: draws the scaling series the benches print
//! (`SERIES` lines, see `rollback_benches::Plot`) as one PNG per plot, both axes
//! logarithmic, and prints how each curve grows: the exponent k of y ∝ x^k between
//! neighbouring points (for per-unit plots, of the total), so a reader sees where a
//! curve stops being linear. `benches/all.sh --plots DIR` runs it.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

/// The fonts looked for, in order (Debian's fonts-dejavu-core, fonts-liberation).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

#[derive(Default)]
struct PlotData {
    title: String,
    x: String,
    y: String,
    per_unit: bool,
    curves: BTreeMap<String, Vec<(f64, f64)>>,
}

fn parse(text: &str) -> BTreeMap<String, PlotData> {
    let mut plots: BTreeMap<String, PlotData> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [_, id, title, x, y, kind, curve, px, py] = f.as_slice() else { continue };
        let (Ok(px), Ok(py)) = (px.parse::<f64>(), py.parse::<f64>()) else { continue };
        let plot = plots.entry((*id).to_owned()).or_default();
        (plot.title, plot.x, plot.y, plot.per_unit) = ((*title).into(), (*x).into(), (*y).into(), *kind == "per-unit");
        plot.curves.entry((*curve).to_owned()).or_default().push((px, py));
    }
    for plot in plots.values_mut() {
        for points in plot.curves.values_mut() {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            // One point per x (a repeated measurement keeps the last).
            points.dedup_by(|later, earlier| {
                let same = later.0 == earlier.0;
                if same {
                    earlier.1 = later.1;
                }
                same
            });
        }
    }
    plots
}

/// The growth exponent of the total between two points: 1 is linear.
fn exponent(per_unit: bool, a: (f64, f64), b: (f64, f64)) -> f64 {
    let total = |p: (f64, f64)| if per_unit { p.1 * p.0 } else { p.1 };
    (total(b).max(1e-12) / total(a).max(1e-12)).ln() / (b.0 / a.0).ln()
}

fn verdict(k: f64) -> &'static str {
    if k > 1.2 {
        "superlinear"
    } else if k < 0.8 {
        "sublinear (fixed costs dominate)"
    } else {
        "linear"
    }
}

/// An axis label: no decimals from 10 up, thousands as k and millions as M.
fn number(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{}M", trim(v / 1e6)),
        a if a >= 1e4 => format!("{}k", trim(v / 1e3)),
        a if a >= 10.0 => format!("{v:.0}"),
        _ => trim(v),
    }
}

fn trim(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn draw(path: &Path, plot: &PlotData) -> Result<(), Box<dyn std::error::Error>> {
    let points = plot.curves.values().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y.max(1e-3)), y1.max(y.max(1e-3)));
    }
    let root = BitMapBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&plot.title, ("sans-serif", 22))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((x0 * 0.8..x1 * 1.25).log_scale(), (y0 * 0.7..y1 * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(&plot.x)
        .y_desc(&plot.y)
        .label_style(("sans-serif", 15))
        .max_light_lines(1)
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|v| number(*v))
        .y_label_formatter(&|v| number(*v))
        .draw()?;
    for (i, (curve, points)) in plot.curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let clamped: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x, y.max(1e-3))).collect();
        chart
            .draw_series(LineSeries::new(clamped.clone(), color.stroke_width(2)))?
            .label(curve)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
        chart.draw_series(clamped.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, out] = args.as_slice() else {
        eprintln!("usage: rollback-bench-plot SERIES_TSV OUT_DIR");
        std::process::exit(2);
    };
    let Some(font) = FONTS.iter().find_map(|f| std::fs::read(f).ok()) else {
        eprintln!(
            "rollback-bench-plot: no font found (looked for {}); apt-get install fonts-dejavu-core",
            FONTS.join(", ")
        );
        std::process::exit(1);
    };
    if plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice())).is_err() {
        eprintln!("rollback-bench-plot: the font could not be read");
        std::process::exit(1);
    }
    let text = std::fs::read_to_string(input).unwrap_or_else(|e| {
        eprintln!("rollback-bench-plot: {input}: {e}");
        std::process::exit(2)
    });
    std::fs::create_dir_all(out).unwrap();
    let plots = parse(&text);
    println!("| plot | curve | x | y | growth exponent k to the next point (1 = linear) |");
    println!("|---|---|---:|---:|---|");
    for (id, plot) in &plots {
        let path = Path::new(out).join(format!("{id}.png"));
        if let Err(e) = draw(&path, plot) {
            eprintln!("rollback-bench-plot: {}: {e}", path.display());
            std::process::exit(1);
        }
        for (curve, points) in &plot.curves {
            for (i, &p) in points.iter().enumerate() {
                let growth = points
                    .get(i + 1)
                    .map(|&next| {
                        let k = exponent(plot.per_unit, p, next);
                        format!("{k:.2} ({})", verdict(k))
                    })
                    .unwrap_or_default();
                println!("| {id} | {curve} | {} | {:.3} | {growth} |", p.0, p.1);
            }
        }
        eprintln!("wrote {}", path.display());
    }
}
