//! The instruction as a cache key sees it: every field of the parsed
//! instruction written under a tag chosen here, once and for all.
//!
//! The key used to hash the model's `Debug` text, so renaming a field of
//! the Dockerfile model, or reordering one, silently changed every key and
//! orphaned every cache in every registry. Here each field is named by a
//! tag of its own, and every model type is taken apart by exhaustive
//! destructuring: a field added to the model does not compile until it is
//! given a tag here (or declared irrelevant, with the reason), and the
//! golden tests below show any change to the encoding as a changed line.

use crate::dockerfile::{
    ArgDecl, CommandForm, CopyInstruction, CopySource, Healthcheck, Heredoc, Instruction,
    InstructionKind, RunInstruction,
};
use crate::image::Compression;

/// `(tag, value)` pairs in a fixed order. An optional field is present
/// only when set, so `None` and `Some("")` differ; a list is one pair per
/// element.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstructionForm {
    fields: Vec<(&'static str, String)>,
}

impl InstructionForm {
    /// `instruction`'s form for a build whose layers are `compression`
    /// (a zstd layer from another build must not end up in a build that
    /// writes gzip: Docker manifests cannot carry zstd).
    pub fn of(instruction: &Instruction, compression: Compression) -> Self {
        let mut form = InstructionForm::default();
        let Instruction {
            // Where it is in the Dockerfile does not change what it makes.
            line: _,
            text,
            kind,
        } = instruction;
        form.push("text", text);
        form.push(
            "layers",
            match compression {
                Compression::Gzip => "gzip",
                Compression::Zstd => "zstd",
                Compression::None => "none",
            },
        );
        form.kind(kind);
        form
    }

    pub fn fields(&self) -> &[(&'static str, String)] {
        &self.fields
    }

    fn push(&mut self, tag: &'static str, value: impl Into<String>) {
        self.fields.push((tag, value.into()));
    }

    fn optional(&mut self, tag: &'static str, value: &Option<String>) {
        if let Some(value) = value {
            self.push(tag, value);
        }
    }

    fn flag(&mut self, tag: &'static str, value: bool) {
        self.push(tag, if value { "true" } else { "false" });
    }

    fn pairs(&mut self, pairs: &[(String, String)]) {
        for (name, value) in pairs {
            self.push("name", name);
            self.push("value", value);
        }
    }

    fn list(&mut self, tag: &'static str, items: &[String]) {
        for item in items {
            self.push(tag, item);
        }
    }

    fn kind(&mut self, kind: &InstructionKind) {
        match kind {
            InstructionKind::Env(pairs) => {
                self.push("kind", "ENV");
                self.pairs(pairs);
            }
            InstructionKind::Label(pairs) => {
                self.push("kind", "LABEL");
                self.pairs(pairs);
            }
            InstructionKind::Maintainer(name) => {
                self.push("kind", "MAINTAINER");
                self.push("maintainer", name);
            }
            InstructionKind::Expose(ports) => {
                self.push("kind", "EXPOSE");
                self.list("port", ports);
            }
            InstructionKind::Volume(paths) => {
                self.push("kind", "VOLUME");
                self.list("path", paths);
            }
            InstructionKind::User(user) => {
                self.push("kind", "USER");
                self.push("user", user);
            }
            InstructionKind::Workdir(path) => {
                self.push("kind", "WORKDIR");
                self.push("path", path);
            }
            InstructionKind::Cmd(command) => {
                self.push("kind", "CMD");
                self.command(command);
            }
            InstructionKind::Entrypoint(command) => {
                self.push("kind", "ENTRYPOINT");
                self.command(command);
            }
            InstructionKind::Shell(argv) => {
                self.push("kind", "SHELL");
                self.list("arg", argv);
            }
            InstructionKind::StopSignal(signal) => {
                self.push("kind", "STOPSIGNAL");
                self.push("signal", signal);
            }
            InstructionKind::Healthcheck(check) => {
                self.push("kind", "HEALTHCHECK");
                self.healthcheck(check);
            }
            InstructionKind::Arg(decls) => {
                self.push("kind", "ARG");
                for ArgDecl { name, default } in decls {
                    self.push("name", name);
                    self.optional("default", default);
                }
            }
            InstructionKind::Onbuild(trigger) => {
                self.push("kind", "ONBUILD");
                // A trigger is never ONBUILD itself: one level, closed by
                // an end marker so what follows cannot be read as its.
                let Instruction {
                    line: _,
                    text,
                    kind,
                } = trigger.as_ref();
                self.push("trigger-text", text);
                self.kind(kind);
                self.push("trigger-end", "");
            }
            InstructionKind::Copy(copy) => {
                self.push("kind", "COPY");
                self.copy(copy);
            }
            InstructionKind::Add(add) => {
                self.push("kind", "ADD");
                self.copy(add);
            }
            InstructionKind::Run(run) => {
                self.push("kind", "RUN");
                self.run(run);
            }
        }
    }

    fn command(&mut self, command: &CommandForm) {
        match command {
            CommandForm::Exec(argv) => {
                self.push("form", "exec");
                self.list("arg", argv);
            }
            CommandForm::Shell(line) => {
                self.push("form", "shell");
                self.push("line", line);
            }
        }
    }

    fn healthcheck(&mut self, check: &Healthcheck) {
        match check {
            Healthcheck::None => self.push("check", "none"),
            Healthcheck::Check {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => {
                self.push("check", "command");
                self.command(test);
                for (tag, duration) in [
                    ("interval-ns", interval),
                    ("timeout-ns", timeout),
                    ("start-period-ns", start_period),
                    ("start-interval-ns", start_interval),
                ] {
                    if let Some(duration) = duration {
                        self.push(tag, duration.as_nanos().to_string());
                    }
                }
                if let Some(retries) = retries {
                    self.push("retries", retries.to_string());
                }
            }
        }
    }

    fn heredoc(&mut self, heredoc: &Heredoc) {
        let Heredoc {
            name,
            content,
            expand,
        } = heredoc;
        self.push("heredoc-name", name);
        self.push("heredoc-content", content);
        self.flag("heredoc-expand", *expand);
    }

    fn copy(&mut self, copy: &CopyInstruction) {
        let CopyInstruction {
            sources,
            dest,
            from,
            chown,
            chmod,
            link,
            checksum,
            keep_git_dir,
            exclude,
            parents,
        } = copy;
        for source in sources {
            match source {
                CopySource::Path(path) => self.push("source", path),
                CopySource::Heredoc(heredoc) => self.heredoc(heredoc),
            }
        }
        self.push("dest", dest);
        self.optional("from", from);
        self.optional("chown", chown);
        self.optional("chmod", chmod);
        self.flag("link", *link);
        self.optional("checksum", checksum);
        self.flag("keep-git-dir", *keep_git_dir);
        self.list("exclude", exclude);
        self.flag("parents", *parents);
    }

    fn run(&mut self, run: &RunInstruction) {
        let RunInstruction {
            command,
            heredocs,
            mounts,
            network,
            security,
        } = run;
        self.command(command);
        for heredoc in heredocs {
            self.heredoc(heredoc);
        }
        self.list("mount", mounts);
        self.optional("network", network);
        self.optional("security", security);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    /// The forms of the instructions of `dockerfile`'s only stage, one
    /// line per instruction, `tag=value` joined by `; `.
    fn forms(dockerfile: &str, compression: Compression) -> Vec<String> {
        let parsed = parse(dockerfile).unwrap();
        parsed.stages[0]
            .instructions
            .iter()
            .map(|instruction| {
                InstructionForm::of(instruction, compression)
                    .fields()
                    .iter()
                    .map(|(tag, value)| format!("{tag}={value}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .collect()
    }

    /// The encoding of every instruction kind, as a golden table: a change
    /// here changes cache keys, and must show up in review as a changed
    /// line of this test.
    #[test]
    fn every_kind_has_a_fixed_encoding() {
        let dockerfile = "\
FROM scratch
ENV A=1 B=\"two words\"
LABEL org.example=x
MAINTAINER someone
EXPOSE 80 443/udp
VOLUME /data
USER 1000:1000
WORKDIR /src
CMD [\"run\", \"--fast\"]
ENTRYPOINT exec server
SHELL [\"/bin/sh\", \"-c\"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=3 CMD check
HEALTHCHECK NONE
ARG VERSION=1.0 DEBUG
ONBUILD RUN make
COPY --from=build --chown=1:1 --chmod=644 --link --exclude=*.md a b /dst/
ADD --checksum=sha256:abc --keep-git-dir=true https://example.com/x /x
COPY --parents src/ /out/
RUN --mount=type=cache,target=/root/.cache --network=none make
";
        assert_eq!(
            forms(dockerfile, Compression::Gzip),
            [
                "text=ENV A=1 B=\"two words\"; layers=gzip; kind=ENV; name=A; value=1; name=B; value=\"two words\"",
                "text=LABEL org.example=x; layers=gzip; kind=LABEL; name=org.example; value=x",
                "text=MAINTAINER someone; layers=gzip; kind=MAINTAINER; maintainer=someone",
                "text=EXPOSE 80 443/udp; layers=gzip; kind=EXPOSE; port=80; port=443/udp",
                "text=VOLUME /data; layers=gzip; kind=VOLUME; path=/data",
                "text=USER 1000:1000; layers=gzip; kind=USER; user=1000:1000",
                "text=WORKDIR /src; layers=gzip; kind=WORKDIR; path=/src",
                "text=CMD [\"run\", \"--fast\"]; layers=gzip; kind=CMD; form=exec; arg=run; arg=--fast",
                "text=ENTRYPOINT exec server; layers=gzip; kind=ENTRYPOINT; form=shell; line=exec server",
                "text=SHELL [\"/bin/sh\", \"-c\"]; layers=gzip; kind=SHELL; arg=/bin/sh; arg=-c",
                "text=STOPSIGNAL SIGTERM; layers=gzip; kind=STOPSIGNAL; signal=SIGTERM",
                "text=HEALTHCHECK --interval=5s --retries=3 CMD check; layers=gzip; kind=HEALTHCHECK; check=command; form=shell; line=check; interval-ns=5000000000; retries=3",
                "text=HEALTHCHECK NONE; layers=gzip; kind=HEALTHCHECK; check=none",
                "text=ARG VERSION=1.0 DEBUG; layers=gzip; kind=ARG; name=VERSION; default=1.0; name=DEBUG",
                "text=ONBUILD RUN make; layers=gzip; kind=ONBUILD; trigger-text=RUN make; kind=RUN; form=shell; line=make; trigger-end=",
                "text=COPY --from=build --chown=1:1 --chmod=644 --link --exclude=*.md a b /dst/; layers=gzip; kind=COPY; source=a; source=b; dest=/dst/; from=build; chown=1:1; chmod=644; link=true; keep-git-dir=false; exclude=*.md; parents=false",
                "text=ADD --checksum=sha256:abc --keep-git-dir=true https://example.com/x /x; layers=gzip; kind=ADD; source=https://example.com/x; dest=/x; link=false; checksum=sha256:abc; keep-git-dir=true; parents=false",
                "text=COPY --parents src/ /out/; layers=gzip; kind=COPY; source=src/; dest=/out/; link=false; keep-git-dir=false; parents=true",
                "text=RUN --mount=type=cache,target=/root/.cache --network=none make; layers=gzip; kind=RUN; form=shell; line=make; mount=type=cache,target=/root/.cache; network=none",
            ]
        );
    }

    #[test]
    fn here_documents_and_compression_are_in_the_form() {
        let dockerfile =
            "FROM scratch\nRUN <<EOF\necho hi\nEOF\nCOPY <<-'END' /greeting\n\thello\nEND\n";
        assert_eq!(
            forms(dockerfile, Compression::Zstd),
            [
                "text=RUN <<EOF; layers=zstd; kind=RUN; form=shell; line=<<EOF; heredoc-name=EOF; heredoc-content=echo hi\n; heredoc-expand=true",
                "text=COPY <<-'END' /greeting; layers=zstd; kind=COPY; heredoc-name=END; heredoc-content=hello\n; heredoc-expand=false; dest=/greeting; link=false; keep-git-dir=false; parents=false",
            ]
        );
    }

    #[test]
    fn unset_and_empty_options_differ() {
        let unset = forms("FROM scratch\nARG A\n", Compression::Gzip);
        let empty = forms("FROM scratch\nARG A=\n", Compression::Gzip);
        assert_ne!(unset, empty);
    }
}
