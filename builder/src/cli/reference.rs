//! The flag reference in README.md, rendered from the same clap definitions
//! `--help` prints, so the two cannot drift apart (a test compares them).

use clap::CommandFactory;

use super::Args;

/// Markers around the generated section of README.md.
pub const BEGIN: &str = "<!-- flags:begin (generated from kiln's clap definitions; see builder/tests/readme_flags.rs) -->";
pub const END: &str = "<!-- flags:end -->";
/// Markers around the generated kaniko table of README.md.
pub const KANIKO_BEGIN: &str = "<!-- kaniko-flags:begin (generated from builder/src/cli/kaniko.rs; see builder/tests/readme_flags.rs) -->";
pub const KANIKO_END: &str = "<!-- kaniko-flags:end -->";

/// One Markdown table per help heading: flag, default, meaning.
pub fn markdown() -> String {
    let command = Args::command();
    let mut headings: Vec<String> = Vec::new();
    for arg in command.get_arguments() {
        if let Some(heading) = arg.get_help_heading()
            && !headings.iter().any(|h| h == heading)
        {
            headings.push(heading.to_string());
        }
    }
    let mut out = String::new();
    for heading in &headings {
        out.push_str(&format!(
            "\n### {heading}\n\n| flag | default | meaning |\n|---|---|---|\n"
        ));
        for arg in command
            .get_arguments()
            .filter(|a| a.get_help_heading() == Some(heading.as_str()))
        {
            let Some(long) = arg.get_long() else { continue };
            let name = match arg.get_short() {
                Some(short) => format!("`-{short}`, `--{long}`"),
                None => format!("`--{long}`"),
            };
            let default = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",");
            let default = if default.is_empty() {
                String::new()
            } else {
                format!("`{default}`")
            };
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let help = help
                .split("\n\n")
                .next()
                .unwrap_or("")
                .replace('\n', " ")
                .replace('|', "\\|");
            out.push_str(&format!("| {name} | {default} | {help} |\n"));
        }
    }
    out
}

/// `readme` with its generated sections replaced by [`markdown`] and the
/// kaniko table; `None` when markers are missing.
pub fn update_readme(readme: &str) -> Option<String> {
    let readme = replace_between(readme, BEGIN, END, &markdown())?;
    replace_between(
        &readme,
        KANIKO_BEGIN,
        KANIKO_END,
        &super::kaniko::markdown(),
    )
}

fn replace_between(text: &str, begin: &str, end: &str, content: &str) -> Option<String> {
    let start = text.find(begin)? + begin.len();
    let stop = text[start..].find(end)? + start;
    Some(format!(
        "{}\n{}\n{}",
        &text[..start],
        content,
        &text[stop..]
    ))
}
