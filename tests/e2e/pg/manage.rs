//! The management commands on PostgreSQL (`catalog::pg::manage`) from two nodes: a delete
//! taken on node B of a version whose file node A holds removes the rows at once and hands the
//! file to A, which removes it; B's own files go at once; the embed-in-progress guard and
//! `--force` across nodes; the newest version left is embedded again; preferences, current
//! groups and the audit trail are the cluster's.

use super::fixture::{LONG, carol, embed, store};
use super::queue::{catalog, count, member};
use ingestd::catalog::pg::{deletes, manage, queue};
use ingestd::catalog::{AuditFilter, PrefsChange};

#[test]
fn a_delete_on_one_node_of_another_nodes_version_hands_the_file_to_its_holder() {
    let Some((db, mut a)) = catalog() else {
        return;
    };
    let mut b = db.client();
    let dir = tempfile::tempdir().unwrap();
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    let v1 = store(&mut a, "a", &root_a, "sales", "q.csv", "one");
    embed(&mut a, "a");
    let v2 = store(&mut b, "b", &root_b, "sales", "q.csv", "two");
    assert_eq!(v2, root_b.join("sales/q_v2.csv"));
    embed(&mut b, "b");

    // On b: delete v2 (b's own file, removed at once) and v1 (a's, handed to a).
    let out = manage::delete(&mut b, "b", &root_b, "sales", "q.csv@v2", &carol(), 3);
    assert!(out.ok, "{out:?}");
    assert!(!v2.exists());
    assert!(
        out.message.contains("queued job"),
        "v1 is the newest left and its embeddings were replaced by v2's: {out:?}"
    );
    // The v1 job queued by that delete blocks nothing: its source is not processing.
    let out = manage::delete(&mut b, "b", &root_b, "sales", "q.csv", &carol(), 3);
    assert!(out.ok, "{out:?}");
    assert_eq!(out.removed, vec!["v1"]);
    // The rows are gone from every node at once; a's file waits for a.
    assert_eq!(count(&mut a, "SELECT COUNT(*) FROM versions"), 0);
    assert_eq!(count(&mut a, "SELECT COUNT(*) FROM generations"), 0);
    assert_eq!(count(&mut a, "SELECT COUNT(*) FROM vectors"), 0);
    assert_eq!(count(&mut a, "SELECT COUNT(*) FROM jobs"), 0);
    assert!(v1.exists());
    assert_eq!(
        deletes::pending(&mut a).unwrap(),
        vec![("a".to_string(), 1)]
    );
    let carried = deletes::carry_out(&mut a, "a", &root_a).unwrap();
    assert_eq!(carried.removed, vec![v1.clone()]);
    assert!(!v1.exists());
    assert!(deletes::pending(&mut a).unwrap().is_empty());

    let missing = manage::delete(&mut b, "b", &root_b, "sales", "q.csv", &carol(), 3);
    assert!(
        !missing.ok && missing.message.contains("no source named"),
        "{missing:?}"
    );
}

#[test]
fn a_version_being_embedded_on_another_node_is_guarded_and_force_cancels_it_there() {
    let Some((db, mut a)) = catalog() else {
        return;
    };
    let mut b = db.client();
    let dir = tempfile::tempdir().unwrap();
    let root_a = dir.path().join("a");
    store(&mut a, "a", &root_a, "sales", "q.csv", "one");
    let (started, _) = queue::claim(&mut a, &member("a", LONG, false), 3, 1).unwrap();
    let job = started[0].job;

    let refused = manage::delete(&mut b, "b", dir.path(), "sales", "q.csv", &carol(), 3);
    assert!(!refused.ok, "{refused:?}");
    assert!(
        refused
            .message
            .contains(&format!("being embedded by job {job}"))
            && refused.message.contains("--force"),
        "{refused:?}"
    );
    assert_eq!(refused.job.map(|j| j.id), Some(job));
    // --force on b cancels a's job; its worker on a is told at its next call, not by b.
    let here =
        manage::cancel_for_delete(&mut b, "b", "sales", &["q.csv".into()], &carol()).unwrap();
    assert!(here.is_empty());
    let out = manage::delete(&mut b, "b", dir.path(), "sales", "q.csv", &carol(), 3);
    assert!(out.ok, "{out:?}");
    assert_eq!(
        deletes::pending(&mut b).unwrap(),
        vec![("a".to_string(), 1)]
    );
}

#[test]
fn preferences_current_groups_and_the_audit_trail_are_the_clusters() {
    let Some((db, mut a)) = catalog() else {
        return;
    };
    let mut b = db.client();
    let dir = tempfile::tempdir().unwrap();
    store(&mut a, "a", dir.path(), "sales", "q.csv", "one");
    let change = PrefsChange {
        columns: Some(vec!["a".into()]),
        context: Some(vec!["a".into()]),
        template: Some(Some("{a}".into())),
        ..PrefsChange::default()
    };
    let set =
        manage::set_prefs(&mut a, "a", "sales", change, &carol(), "columns a".into()).unwrap();
    assert_eq!(set.columns, vec!["a"]);
    let seen = ingestd::catalog::pg::jobs::prefs(&mut b, "sales").unwrap();
    assert_eq!(
        (seen.columns, seen.template, seen.updated_by),
        (
            vec!["a".to_string()],
            Some("{a}".to_string()),
            Some("carol".to_string())
        )
    );
    // Unset keys keep their values; `clear` resets all.
    let sheet = PrefsChange {
        sheet: Some(Some("Q1".into())),
        ..PrefsChange::default()
    };
    manage::set_prefs(&mut b, "b", "sales", sheet, &carol(), "sheet Q1".into()).unwrap();
    assert_eq!(
        manage::preferred_sheet(&mut a, "sales").unwrap().as_deref(),
        Some("Q1")
    );
    let kept = ingestd::catalog::pg::jobs::prefs(&mut a, "sales").unwrap();
    assert_eq!(kept.columns, vec!["a"]);
    let clear = PrefsChange {
        clear: true,
        ..PrefsChange::default()
    };
    let cleared = manage::set_prefs(&mut a, "a", "sales", clear, &carol(), "clear".into()).unwrap();
    assert!(cleared.columns.is_empty() && cleared.sheet.is_none());

    manage::set_current_group(&mut a, 1002, Some("sales")).unwrap();
    assert_eq!(
        manage::current_group(&mut b, 1002).unwrap().as_deref(),
        Some("sales")
    );
    manage::set_current_group(&mut b, 1002, Some("other")).unwrap();
    assert_eq!(
        manage::current_group(&mut a, 1002).unwrap().as_deref(),
        Some("other")
    );
    manage::set_current_group(&mut b, 1002, None).unwrap();
    assert_eq!(manage::current_group(&mut a, 1002).unwrap(), None);
    assert_eq!(manage::group_names(&mut b).unwrap(), vec!["sales"]);

    // The trail, newest first, filtered and paged, with every node's records.
    let all = manage::audit_entries(
        &mut b,
        &AuditFilter {
            group: Some("sales".into()),
            limit: 100,
            ..AuditFilter::default()
        },
    )
    .unwrap();
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["prefs", "prefs", "prefs", "add"]);
    assert_eq!(all[3].actor.user.as_deref(), Some("carol"));
    let page = manage::audit_entries(
        &mut b,
        &AuditFilter {
            action: Some("prefs".into()),
            limit: 2,
            before: all[0].id,
            ..AuditFilter::default()
        },
    )
    .unwrap();
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![all[1].id, all[2].id]
    );
}
