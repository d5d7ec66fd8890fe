//! `lazytunnel completions SHELL` and `lazytunnel man DIR`: the scripts a shell loads and the
//! pages `man` renders, checked with the real bash and the real `man`.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{path_str, prerequisite_missing, run_cli, write_file};

/// Every subcommand a user can type after `lazytunnel`.
const SUBCOMMANDS: [&str; 10] = [
    "run",
    "check",
    "status",
    "stop",
    "reload",
    "connect",
    "install",
    "uninstall",
    "completions",
    "man",
];

#[test]
fn bash_completion_script_is_valid_bash() {
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script(dir.path(), "bash");

    let parsed = bash(&["-n", path_str(&script)]);

    assert!(parsed.status.success(), "bash -n: {}", stderr(&parsed));
}

#[test]
fn bash_completes_the_subcommands_after_lazytunnel() {
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script(dir.path(), "bash");

    let offered = complete_in_bash(&script, &["lazytunnel", ""]);

    for sub in SUBCOMMANDS {
        assert!(
            offered.iter().any(|w| w == sub),
            "{sub} not offered: {offered:?}"
        );
    }
}

#[test]
fn bash_completes_the_service_managers_after_install_and_the_shells_after_completions() {
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script(dir.path(), "bash");

    let managers = complete_in_bash(&script, &["lazytunnel", "install", ""]);
    let shells = complete_in_bash(&script, &["lazytunnel", "completions", ""]);

    for manager in ["launchd", "systemd"] {
        assert!(
            managers.contains(&manager.to_string()),
            "{manager}: {managers:?}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell.to_string()), "{shell}: {shells:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_describe_every_subcommand() {
    // The shells themselves are not installed by scripts/test; each script must at least
    // register itself for `lazytunnel` and carry every subcommand with its description.
    for (shell, registration) in [
        ("zsh", "#compdef lazytunnel"),
        ("fish", "complete -c lazytunnel"),
    ] {
        let output = run_cli(["completions", shell]);
        assert!(
            output.status.success(),
            "completions {shell}: {}",
            stderr(&output)
        );
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains(registration),
            "{shell} script lacks {registration:?}"
        );
        for (sub, about) in [
            ("run", "Listen on the configured ports"),
            ("install", "Install a launchd agent"),
            ("completions", "Print the shell completion script"),
        ] {
            assert!(
                script.contains(sub) && script.contains(about),
                "{shell} script lacks {sub} ({about})"
            );
        }
    }
}

#[test]
fn man_pages_render_with_man_for_the_program_and_every_subcommand() {
    if which("man").is_none() {
        prerequisite_missing("`man` is not installed (scripts/test installs man-db)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pages_dir = dir.path().join("man1");

    let output = run_cli(["man", path_str(&pages_dir)]);

    assert!(
        output.status.success(),
        "lazytunnel man: {}",
        stderr(&output)
    );
    let written: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let main_page = render(&pages_dir.join("lazytunnel.1"));
    for sub in SUBCOMMANDS {
        let name = format!("lazytunnel-{sub}");
        assert!(
            main_page.contains(&format!("{name}(1)")),
            "lazytunnel(1) lacks {name}(1)"
        );
        let file = pages_dir.join(format!("{name}.1"));
        assert!(
            written.contains(&path_str(&file).to_string()),
            "{name}.1 not listed"
        );
        let page = render(&file);
        assert!(
            page.contains("SYNOPSIS"),
            "{name}(1) has no SYNOPSIS:\n{page}"
        );
    }
    let run_page = render(&pages_dir.join("lazytunnel-run.1"));
    assert!(
        run_page.contains("--foreground"),
        "run's options missing:\n{run_page}"
    );
    let systemd_page = render(&pages_dir.join("lazytunnel-install-systemd.1"));
    assert!(
        systemd_page.contains("--socket-activated"),
        "{systemd_page}"
    );
}

/// Writes `lazytunnel completions SHELL` to a file in `dir`.
fn completion_script(dir: &Path, shell: &str) -> std::path::PathBuf {
    let output = run_cli(["completions", shell]);
    assert!(
        output.status.success(),
        "completions {shell}: {}",
        stderr(&output)
    );
    let path = dir.join(format!("lazytunnel.{shell}"));
    write_file(&path, &String::from_utf8_lossy(&output.stdout));
    path
}

/// Sources `script` in a non-interactive bash, then calls the function it registered for
/// `lazytunnel` (found with `complete -p`, so the test does not depend on its name) as bash
/// would for the command line `words`, the cursor on the last word. Returns COMPREPLY.
fn complete_in_bash(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        r#"source "$1" || exit 1
spec=$(complete -p lazytunnel) || exit 1
function=${{spec#*-F }}; function=${{function%% *}}
COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
"$function" lazytunnel "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = quoted.join(" ")
    );
    let output = bash(&["-c", &program, "complete", path_str(script)]);
    assert!(
        output.status.success(),
        "completing {words:?}: {}",
        stderr(&output)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn bash(args: &[&str]) -> Output {
    Command::new("bash")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("could not run bash")
}

/// `man -l PAGE` as plain text, 80 columns; fails the test on any warning from the formatter.
fn render(page: &Path) -> String {
    let output = Command::new("man")
        .args(["--warnings", "-l", path_str(page)])
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .stdin(Stdio::null())
        .output()
        .expect("could not run man");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "man -l {}: {}",
        page.display(),
        stderr(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
