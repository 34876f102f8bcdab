//! The control protocol against a running daemon: every malformed request gets a structured
//! error, and the connection and the daemon stay healthy after each.

use crate::helper::Daemon;
use ingestd::protocol::{ErrorCode, MAX_LINE_BYTES, StatusInfo, cmd};
use std::io::Write;

fn error_code(response: &ingestd::protocol::Response) -> ErrorCode {
    assert!(!response.ok, "{response:?}");
    let error = response.error.as_ref().expect("an error body");
    assert!(!error.message.is_empty());
    error.code
}

#[test]
fn malformed_requests_get_errors_and_the_connection_stays_up() {
    let daemon = Daemon::start();
    let mut client = daemon.client();
    let cases: &[(&[u8], ErrorCode)] = &[
        (b"garbage", ErrorCode::BadJson),
        (b"\xff\xfe not utf-8", ErrorCode::BadJson),
        (b"[1,2,3]", ErrorCode::BadRequest),
        (br#"{"cmd":"status"}"#, ErrorCode::BadRequest),
        (br#"{"v":99,"cmd":"status"}"#, ErrorCode::VersionMismatch),
        (br#"{"v":1,"cmd":"launch"}"#, ErrorCode::UnknownCommand),
        (br#"{"v":1,"cmd":"show"}"#, ErrorCode::BadArgs),
        (br#"{"v":1,"cmd":"status","bogus":1}"#, ErrorCode::BadArgs),
        (br#"{"v":1,"cmd":"ls","group":"nope"}"#, ErrorCode::NotFound),
        (
            br#"{"v":1,"cmd":"show","source":"nope.csv"}"#,
            ErrorCode::NotFound,
        ),
    ];
    for (line, want) in cases {
        let response = client.send_raw_line(line).expect("a response");
        assert_eq!(
            error_code(&response),
            *want,
            "{}",
            String::from_utf8_lossy(line)
        );
        // The same connection still answers a good request.
        let status: StatusInfo = client.call(&cmd::Status {}).expect("still healthy");
        assert_eq!(status.protocol, ingestd::protocol::PROTOCOL_VERSION);
    }
}

#[test]
fn a_two_mib_line_is_refused_and_the_next_request_works() {
    let daemon = Daemon::start();
    let mut client = daemon.client();
    let mut huge = br#"{"v":1,"cmd":"show","source":""#.to_vec();
    huge.resize(2 * MAX_LINE_BYTES, b'a');
    huge.extend_from_slice(b"\"}");
    let response = client.send_raw_line(&huge).expect("a response");
    assert_eq!(error_code(&response), ErrorCode::LineTooLong);
    let status: StatusInfo = client.call(&cmd::Status {}).expect("same connection works");
    assert!(status.uptime_secs < 3600);
}

#[test]
fn a_client_that_disconnects_mid_request_does_not_hurt_the_daemon() {
    let daemon = Daemon::start();
    for _ in 0..20 {
        let mut raw = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
        raw.write_all(br#"{"v":1,"cmd":"sta"#).unwrap();
        drop(raw);
    }
    // Half a huge line, then gone.
    let mut raw = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    raw.write_all(&vec![b'x'; 3 * MAX_LINE_BYTES / 2]).unwrap();
    drop(raw);
    let status = daemon.status();
    assert_eq!(status.pid, daemon.pid());
    // Several requests in one write are answered in order.
    let mut client = daemon.client();
    client
        .write_raw(b"{\"v\":1,\"cmd\":\"groups\"}\n{\"v\":1,\"cmd\":\"nope\"}\n")
        .unwrap();
    assert!(client.read_response().unwrap().ok);
    assert_eq!(
        error_code(&client.read_response().unwrap()),
        ErrorCode::UnknownCommand
    );
}

#[test]
fn a_second_daemon_on_the_same_socket_refuses_to_start() {
    let daemon = Daemon::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ingestd"))
        .arg("--config")
        .arg(&daemon.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // On a PostgreSQL catalog the same config is the same cluster node too, and the node's
    // name is checked first.
    let as_node = daemon.catalog_db.is_some()
        && stderr.contains("another ingestd is running as node \"e2e\"");
    assert!(stderr.contains("already serving") || as_node, "{stderr}");
    // The first one is untouched.
    assert_eq!(daemon.status().pid, daemon.pid());
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let mut daemon = Daemon::configure("");
    std::fs::create_dir_all(daemon.socket.parent().unwrap()).unwrap();
    // A socket file nobody listens on, as a crash leaves it.
    drop(std::os::unix::net::UnixListener::bind(&daemon.socket).unwrap());
    assert!(daemon.socket.exists());
    daemon.spawn();
    assert_eq!(daemon.status().pid, daemon.pid());
}

#[test]
fn a_socket_held_by_something_that_never_answers_is_replaced() {
    let mut daemon = Daemon::configure("");
    std::fs::create_dir_all(daemon.socket.parent().unwrap()).unwrap();
    // Accepts connections (the kernel's backlog) but never answers, like a process that
    // inherited a dead daemon's listening socket.
    let squatter = std::os::unix::net::UnixListener::bind(&daemon.socket).unwrap();
    daemon.spawn();
    assert_eq!(daemon.status().pid, daemon.pid());
    drop(squatter);
}

#[test]
fn invalid_config_is_refused_naming_the_key() {
    let daemon = Daemon::configure("[ingest]\nsettle_ms = \"soon\"\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ingestd"))
        .arg("--config")
        .arg(&daemon.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("settle_ms"), "{stderr}");
}

#[test]
fn the_socket_gets_the_configured_mode_and_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(Some(group)) = nix::unistd::Group::from_name("nogroup") else {
        crate::helper::skip("no group named nogroup here");
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        crate::helper::skip("not root: cannot give the socket another group");
        return;
    }
    let daemon =
        Daemon::start_with("[server]\nsocket_mode = \"0620\"\nsocket_group = \"nogroup\"\n");
    let meta = std::fs::metadata(&daemon.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o620);
    assert_eq!(meta.gid(), group.gid.as_raw());

    let bad = Daemon::configure("[server]\nsocket_group = \"no-such-group-here\"\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ingestd"))
        .arg("--config")
        .arg(&bad.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-group-here"));
}
