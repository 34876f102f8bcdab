//! The order jobs start in: FIFO within a group, round-robin across groups.
//!
//! Pure functions of the queued jobs and a cursor (the group that last got a job), shared by
//! the claim, which picks what to start, and by `jobs`, which shows each queued job's
//! position; so the positions a user sees are the order the daemon really follows. It lives
//! in the catalog because the claim is a catalog transaction: the catalog never imports the
//! queue.

use std::collections::{BTreeMap, HashSet, VecDeque};

/// A queued job, as the order sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub id: i64,
    pub group: i64,
    pub source: i64,
    /// It may start now (not waiting out a retry backoff).
    pub due: bool,
}

/// Groups in turn, starting with the first group after `cursor` (by id, wrapping around).
fn rotation(groups: impl Iterator<Item = i64>, cursor: Option<i64>) -> Vec<i64> {
    let mut groups: Vec<i64> = groups.collect();
    groups.sort_unstable();
    groups.dedup();
    let start = cursor.map_or(0, |c| groups.partition_point(|&g| g <= c));
    let start = start.min(groups.len());
    groups.rotate_left(start);
    groups
}

/// Per group, its jobs in the order given (the caller's FIFO order: when each was queued).
fn by_group<'a>(jobs: impl Iterator<Item = &'a Waiting>) -> BTreeMap<i64, VecDeque<Waiting>> {
    let mut queues: BTreeMap<i64, VecDeque<Waiting>> = BTreeMap::new();
    for job in jobs {
        queues.entry(job.group).or_default().push_back(*job);
    }
    queues
}

/// Every waiting job (given oldest first) in the order it would start if all were due: one
/// from each group in turn. Position `n` (1-based) of a job is its index here plus one.
pub fn start_order(waiting: &[Waiting], cursor: Option<i64>) -> Vec<i64> {
    let mut queues = by_group(waiting.iter());
    let turn = rotation(queues.keys().copied(), cursor);
    let mut order = Vec::with_capacity(waiting.len());
    while order.len() < waiting.len() {
        for group in &turn {
            if let Some(job) = queues.get_mut(group).and_then(VecDeque::pop_front) {
                order.push(job.id);
            }
        }
    }
    order
}

/// Which jobs to start now, in order, for `slots` free workers; and the new cursor.
///
/// A job is skipped (keeping its place) while it waits out a backoff or while another job of
/// the same source is processing (`busy`): two generations of one source are never written
/// at once, so the swap order is the version order.
pub fn pick(
    waiting: &[Waiting],
    busy: &HashSet<i64>,
    cursor: Option<i64>,
    slots: usize,
) -> (Vec<i64>, Option<i64>) {
    let mut busy = busy.clone();
    let mut queues = by_group(waiting.iter().filter(|j| j.due));
    let turn = rotation(queues.keys().copied(), cursor);
    let mut picked = Vec::new();
    let mut cursor = cursor;
    while picked.len() < slots {
        let mut progress = false;
        for group in &turn {
            if picked.len() == slots {
                break;
            }
            let Some(queue) = queues.get_mut(group) else {
                continue;
            };
            if let Some(at) = queue.iter().position(|j| !busy.contains(&j.source)) {
                let job = queue.remove(at).expect("position is in range");
                busy.insert(job.source);
                picked.push(job.id);
                cursor = Some(job.group);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    (picked, cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: i64, group: i64, source: i64) -> Waiting {
        Waiting {
            id,
            group,
            source,
            due: true,
        }
    }

    #[test]
    fn fifo_within_a_group_round_robin_across_groups() {
        // Group 1 has three jobs queued before group 2's two: they still alternate.
        let jobs = [
            w(1, 1, 10),
            w(2, 1, 11),
            w(3, 1, 12),
            w(4, 2, 20),
            w(5, 2, 21),
        ];
        assert_eq!(start_order(&jobs, None), vec![1, 4, 2, 5, 3]);
        // After group 1 got a job, group 2 is next.
        assert_eq!(start_order(&jobs, Some(1)), vec![4, 1, 5, 2, 3]);
        // A cursor past the last group wraps around.
        assert_eq!(start_order(&jobs, Some(9)), vec![1, 4, 2, 5, 3]);
        assert_eq!(start_order(&[], Some(3)), Vec::<i64>::new());
    }

    #[test]
    fn pick_fills_the_free_slots_in_start_order() {
        let jobs = [w(1, 1, 10), w(2, 1, 11), w(3, 2, 20), w(4, 3, 30)];
        let none = HashSet::new();
        assert_eq!(pick(&jobs, &none, None, 3), (vec![1, 3, 4], Some(3)));
        assert_eq!(pick(&jobs, &none, Some(3), 1), (vec![1], Some(1)));
        assert_eq!(pick(&jobs, &none, None, 0), (vec![], None));
        // More slots than jobs: a group gives a second job once every group had its turn.
        assert_eq!(pick(&jobs, &none, None, 9).0, vec![1, 3, 4, 2]);
    }

    #[test]
    fn pick_skips_busy_sources_and_jobs_in_backoff_without_losing_their_place() {
        let mut jobs = vec![w(1, 1, 10), w(2, 1, 11), w(3, 1, 10)];
        let busy: HashSet<i64> = [10].into();
        // Source 10 is processing: its jobs wait, the next source of the group goes.
        assert_eq!(pick(&jobs, &busy, None, 3).0, vec![2]);
        // Two jobs of one source never start together.
        assert_eq!(pick(&jobs, &HashSet::new(), None, 3).0, vec![1, 2]);
        jobs[0].due = false;
        assert_eq!(pick(&jobs, &HashSet::new(), None, 3).0, vec![2, 3]);
        // Positions ignore backoff: the job keeps its place in line.
        assert_eq!(start_order(&jobs, None), vec![1, 2, 3]);
    }
}
