//! Cluster queue benchmark (issue 12: "claim latency with 2 nodes and 1,000 queued jobs"), run
//! with `cargo bench --bench cluster`; prints medians, asserts no time.
//!
//! Needs a PostgreSQL with pgvector: `eval "$(tests/pg/start.sh)"` exports `PG_TEST_URL`
//! (without it the bench says so and measures nothing). In a fresh database, 1,000 jobs wait
//! in 10 groups; each claim of one job (`catalog::pg::queue::claim`, the takeover sweep
//! included, as a scheduler calls it) is timed, and the job is completed and queued again at
//! the end of the line, so the queue stays 1,000 deep. First one node claims alone, then two
//! nodes (two threads, two connections) claim at once and contend for the claim lock. The
//! yardstick is one `SELECT 1` round trip on the same kind of connection.

use ingestd::catalog::pg::{queue, schema};
use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

mod common;

use common::median;

const QUEUED: usize = 1_000;
const GROUPS: usize = 10;
const CLAIMS: usize = 1_000;
const CAP: usize = 3;

fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Claim, complete and queue again, `n` times, as node `name`: each claim's time.
fn claims(client: &mut Client, name: &str, n: usize) -> Vec<f64> {
    let member = queue::Member {
        name: name.into(),
        lease: Duration::from_secs(30),
        shared_storage: true,
    };
    let mut times = Vec::with_capacity(n);
    while times.len() < n {
        let start = Instant::now();
        let (started, _) = queue::claim(client, &member, CAP, 1).expect("claim");
        let took = start.elapsed();
        let Some(job) = started.first() else {
            continue; // the other node holds every slot for a moment
        };
        times.push(ms(took));
        client
            .execute(
                "UPDATE jobs SET state = 'queued', node = NULL, lease_until = NULL,
                        attempt = 0, queued_at = (SELECT MAX(queued_at) + 1 FROM jobs)
                 WHERE id = $1",
                &[&job.job],
            )
            .expect("queue the job again");
    }
    times
}

fn report(what: &str, times: &[f64], floor: f64) {
    let p50 = median(times.to_vec());
    println!(
        "{what:<34} claims {:>5}  p50 {p50:>6.2} ms  p99 {:>6.2} ms  p50/round trip {:>5.1}x",
        times.len(),
        percentile(times.to_vec(), 0.99),
        p50 / floor
    );
}

fn main() {
    let Some(url) = std::env::var("PG_TEST_URL").ok().filter(|u| !u.is_empty()) else {
        println!("cluster: PG_TEST_URL is not set; run eval \"$(tests/pg/start.sh)\" first");
        return;
    };
    let admin: postgres::Config = url.parse().expect("PG_TEST_URL is a PostgreSQL URL");
    let name = format!("ingestd_bench_{}", std::process::id());
    admin
        .connect(NoTls)
        .expect("connect")
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create the bench database");
    let mut config = admin.clone();
    config.dbname(&name);
    let connect = || {
        config
            .connect(NoTls)
            .expect("connect to the bench database")
    };

    let mut client = connect();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .unwrap();
    schema::migrate(&mut client).unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO groups (name, created_at) SELECT 'g' || g, 0 FROM generate_series(1, {GROUPS}) g;
             INSERT INTO sources (group_id, name, created_at)
                 SELECT 1 + i % {GROUPS}, 's' || i, 0 FROM generate_series(0, {QUEUED} - 1) i;
             INSERT INTO versions (source_id, version_no, status, node, created_at, updated_at)
                 SELECT id, 1, 'queued', CASE WHEN id % 2 = 0 THEN 'a' ELSE 'b' END, 0, 0
                 FROM sources;
             INSERT INTO jobs (group_id, source_id, version_id, state, reason, max_attempts,
                               queued_at)
                 SELECT s.group_id, s.id, v.id, 'queued', 'new_version', 3, v.id
                 FROM sources s JOIN versions v ON v.source_id = s.id;
             ANALYZE;"
        ))
        .unwrap();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    let mut trips = Vec::new();
    for _ in 0..CLAIMS {
        let start = Instant::now();
        client.query_one("SELECT 1", &[]).unwrap();
        trips.push(ms(start.elapsed()));
    }
    let floor = median(trips.clone());
    println!(
        "{:<34} p50 {floor:>6.3} ms  p99 {:>6.3} ms",
        "SELECT 1 round trip (yardstick)",
        percentile(trips, 0.99)
    );

    let alone = claims(&mut client, "a", CLAIMS);
    report("1 node, 1,000 queued", &alone, floor);

    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|node| {
            let mut client = connect();
            std::thread::spawn(move || claims(&mut client, node, CLAIMS / 2))
        })
        .collect();
    let both: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a node's claims"))
        .collect();
    report("2 nodes at once, 1,000 queued", &both, floor);
    let queued: i64 = client
        .query_one("SELECT COUNT(*) FROM jobs WHERE state = 'queued'", &[])
        .unwrap()
        .get(0);
    println!("queued at the end: {queued}");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());

    drop(client);
    admin
        .connect(NoTls)
        .expect("connect")
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .expect("drop the bench database");
}
