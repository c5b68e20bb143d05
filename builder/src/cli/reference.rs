//! The flag reference in README.md, rendered from the same clap definitions
//! `--help` prints, so the two cannot drift apart (a test compares them).

use clap::CommandFactory;

use super::Args;

/// Markers around the generated section of README.md.
pub const BEGIN: &str = "<!-- flags:begin (generated from kiln's clap definitions; see builder/tests/readme_flags.rs) -->";
pub const END: &str = "<!-- flags:end -->";

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

/// `readme` with its generated section replaced by [`markdown`]; `None`
/// when the markers are missing.
pub fn update_readme(readme: &str) -> Option<String> {
    let start = readme.find(BEGIN)? + BEGIN.len();
    let end = readme[start..].find(END)? + start;
    Some(format!(
        "{}\n{}\n{}",
        &readme[..start],
        markdown(),
        &readme[end..]
    ))
}
