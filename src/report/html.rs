//! report.html: report.md rendered to HTML (pulldown-cmark), with each chart's image link
//! replaced by the chart's SVG inline, and a small stylesheet. Self-contained: no script, no
//! font, no request leaves the page.
use super::charts::Chart;
use super::svg::esc;
use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag, TagEnd};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px}\
th{background:#f3f3f3}td:empty{background:#fafafa}figure{margin:1.5em 0}figure svg{max-width:100%;height:auto;border:1px solid #ddd}\
figcaption{font-size:13px;color:#555}code{background:#f3f3f3;padding:0 3px}h2{border-bottom:1px solid #ddd;margin-top:2em}";

/// Render `markdown` as a complete HTML page titled `title`.
pub fn render(markdown: &str, charts: &[Chart], title: &str) -> String {
    let parser = Parser::new_ext(markdown, Options::ENABLE_TABLES);
    let mut events: Vec<Event> = Vec::new();
    // Inside an image whose target is a chart: swallow its alt-text events.
    let mut in_chart = false;
    for ev in parser {
        match ev {
            Event::Start(Tag::Image { dest_url, .. }) => match chart_for(charts, &dest_url) {
                Some(c) => {
                    in_chart = true;
                    events.push(Event::Html(CowStr::from(format!(
                        "<figure>{}<figcaption>{}</figcaption></figure>",
                        c.svg,
                        esc(&c.title)
                    ))));
                }
                None => events.push(Event::Start(Tag::Image {
                    link_type: pulldown_cmark::LinkType::Inline,
                    dest_url,
                    title: CowStr::from(""),
                    id: CowStr::from(""),
                })),
            },
            Event::End(TagEnd::Image) if in_chart => in_chart = false,
            _ if in_chart => {}
            other => events.push(other),
        }
    }
    let mut body = String::new();
    html::push_html(&mut body, events.into_iter());
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        esc(title)
    )
}

fn chart_for<'a>(charts: &'a [Chart], url: &str) -> Option<&'a Chart> {
    let name = url.strip_prefix("charts/")?.strip_suffix(".svg")?;
    charts.iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_links_become_inline_svg_and_tables_render() {
        let charts = vec![Chart {
            name: "a".into(),
            title: "A & B".into(),
            svg: "<svg class=\"chart\"></svg>".into(),
        }];
        let md = "# T\n\n| x | y |\n| --- | ---: |\n| 1 | 2 |\n\n![A & B](charts/a.svg)\n\n![other](x.png)\n";
        let page = render(md, &charts, "t");
        assert!(page.contains(
            "<figure><svg class=\"chart\"></svg><figcaption>A &amp; B</figcaption></figure>"
        ));
        assert!(page.contains("<table>"));
        assert!(!page.contains("charts/a.svg"));
        assert!(page.contains("x.png"));
        assert!(!page.contains("<script"));
    }
}
