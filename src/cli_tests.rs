//! Unit tests of the command line.

use super::*;

fn p(args: &[&str]) -> Result<Invocation, String> {
    parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(|e| e.0)
}

#[test]
fn commands_and_env_file_anywhere() {
    assert_eq!(p(&["server"]).unwrap().command, Command::Server);
    assert_eq!(p(&["--version"]).unwrap().command, Command::Version);
    assert_eq!(p(&["help"]).unwrap().command, Command::Help);
    assert_eq!(p(&["check"]).unwrap().command, Command::Check(None));
    assert_eq!(
        p(&["check", "client"]).unwrap().command,
        Command::Check(Some(Role::Client))
    );
    let inv = p(&["--env-file", "/etc/r.env", "server"]).unwrap();
    assert_eq!(inv.env_file, Some(PathBuf::from("/etc/r.env")));
    let inv = p(&["server", "--env-file=x.env"]).unwrap();
    assert_eq!(inv.env_file, Some(PathBuf::from("x.env")));
}

#[test]
fn dlq_subcommands() {
    assert_eq!(
        p(&["dlq", "list"]).unwrap().command,
        Command::Dlq(DlqCommand::List { limit: 50 })
    );
    assert_eq!(
        p(&["dlq", "list", "--limit", "5"]).unwrap().command,
        Command::Dlq(DlqCommand::List { limit: 5 })
    );
    assert_eq!(
        p(&["dlq", "show", "1-0"]).unwrap().command,
        Command::Dlq(DlqCommand::Show("1-0".parse().unwrap()))
    );
    assert_eq!(
        p(&["dlq", "replay", "1-0", "2-0"]).unwrap().command,
        Command::Dlq(DlqCommand::Replay(Selection::Ids(vec![
            "1-0".into(),
            "2-0".into()
        ])))
    );
    assert_eq!(
        p(&["dlq", "purge", "--all"]).unwrap().command,
        Command::Dlq(DlqCommand::Purge(Selection::All))
    );
    for bad in [
        &["dlq"][..],
        &["dlq", "list", "--limit", "x"],
        &["dlq", "show"],
        &["dlq", "show", "1000"],
        &["dlq", "replay"],
        &["dlq", "purge", "--all", "1-0"],
        &["dlq", "nuke"],
        &["check", "x"],
        &["check", "server", "client"],
    ] {
        assert!(p(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn usage_errors_name_the_argument() {
    assert!(p(&[]).unwrap_err().contains("missing COMMAND"));
    assert!(p(&["serve"]).unwrap_err().contains("\"serve\""));
    assert!(p(&["server", "--port"]).unwrap_err().contains("--port"));
    assert!(p(&["server", "client"]).unwrap_err().contains("unexpected"));
    assert!(p(&["--env-file"]).unwrap_err().contains("--env-file"));
}

#[test]
fn events_tail_and_redeliver() {
    use crate::ops::events::Status;
    let Command::Events { filter, json } =
        p(&["events", "--since", "1h", "--status=dead", "--json"])
            .unwrap()
            .command
    else {
        panic!("events")
    };
    assert!(json);
    assert_eq!(filter.status, Some(Status::Dead));
    assert_eq!(
        p(&["events", "show", "1-0"]).unwrap().command,
        Command::EventShow {
            id: "1-0".parse().unwrap(),
            json: false
        }
    );
    assert_eq!(
        p(&["redeliver", "1-0", "2-0"]).unwrap().command,
        Command::Redeliver(Redeliver::Ids(vec!["1-0".into(), "2-0".into()]))
    );
    assert!(matches!(
        p(&["redeliver", "--since", "10m", "--source", "wa"])
            .unwrap()
            .command,
        Command::Redeliver(Redeliver::Matching(_))
    ));
    assert_eq!(
        p(&["tail", "--json", "--source", "wa"]).unwrap().command,
        Command::Tail(tail::Options {
            json: true,
            source: Some("wa".into())
        })
    );
    assert_eq!(p(&["health"]).unwrap().command, Command::Health(None));
    assert_eq!(
        p(&["health", "client"]).unwrap().command,
        Command::Health(Some(Role::Client))
    );
    for bad in [
        &["events", "--colour", "red"][..],
        &["events", "--status", "done"],
        &["events", "show"],
        &["events", "show", "1000"],
        &["events", "1-0"],
        &["redeliver"],
        &["redeliver", "--source", "wa"],
        &["redeliver", "1-0", "--since", "1h"],
        &["tail", "x"],
        &["tail", "--since"],
        &["health", "x"],
    ] {
        assert!(p(bad).is_err(), "{bad:?}");
    }
}
