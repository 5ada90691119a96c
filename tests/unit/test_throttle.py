"""The adaptive throttle, fed with observations: what it does with each signal."""

from __future__ import annotations

from infra.migrations.checkpoints import CheckpointAhead
from infra.migrations.throttle import (CALM_CHUNKS, FULL_PAGES_CHUNKS, AdaptiveThrottle, ChunkLimits, Decision,
                                       FixedThrottle, Observation, ThrottleSettings)

SETTINGS = ThrottleSettings(target_write_latency_ms=100, min_chunk_rows=100, max_chunk_rows=20_000,
                            max_replay_lag_ms=2_000, initial_chunk_rows=1_000)


def test_a_fast_chunk_grows_the_next_one_at_most_twofold_without_pause_or_slowdown_reason() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=5))
    assert decision.chunk_rows == 2_000
    assert decision.slowed_because is None
    assert decision.pause_ms == 0


def test_chunks_settle_where_they_last_the_budget_of_70_percent_of_the_target() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    for _ in range(20):  # 10 rows per ms: 70 ms of budget is 700 rows
        decision = throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=throttle.chunk_rows / 10))
    assert decision.chunk_rows == 700
    assert decision.pause_ms == 0


def test_a_short_chunk_at_the_end_of_a_pass_does_not_shrink_the_next_ones() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    for _ in range(20):  # full chunks at 10 rows per ms
        throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=throttle.chunk_rows / 10))
    decision = throttle.next(Observation(rows=3, duration_ms=3))  # mostly the chunk's fixed cost
    assert decision.chunk_rows == 700


def test_one_slow_chunk_within_the_target_moves_the_size_only_part_of_the_way() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    for _ in range(20):
        throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=throttle.chunk_rows / 10))
    decision = throttle.next(Observation(rows=700, duration_ms=95))  # a hiccup: 7.4 rows per ms
    assert 515 < decision.chunk_rows < 700


def test_a_new_part_sizes_its_chunks_from_its_own_cost_per_row() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    for _ in range(20):  # the first part: 10 rows per ms
        throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=throttle.chunk_rows / 10))
    throttle.start_part()
    decision = throttle.next(Observation(rows=700, duration_ms=14))  # the next part: 50 rows per ms
    assert decision.chunk_rows == 1_400


def test_a_chunk_slower_than_the_target_shrinks_in_proportion_and_pauses_as_long_as_it_took() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=400))  # not watched
    assert decision.chunk_rows == 175  # the 70 ms budget at 2.5 rows per ms
    assert decision.pause_ms == 400
    assert "took 400 ms (target 100 ms)" in (decision.slowed_because or "")


def test_lock_waits_halve_the_chunk_and_back_off_exponentially_up_to_5_s() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    pauses = [throttle.next(Observation(0, 100, lock_wait=True)).pause_ms for _ in range(8)]
    assert pauses[:4] == [100, 200, 400, 800]
    assert max(pauses) == 5_000
    assert throttle.chunk_rows == 100
    assert throttle.last_slowdown and throttle.last_slowdown.startswith("lock wait")


def test_replay_lag_over_the_limit_halves_the_chunk_and_waits() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=10, replay_lag_ms=3_500))
    assert decision.chunk_rows == 500
    assert decision.pause_ms > 0
    assert decision.slowed_because == "replica replay lag 3.5 s (limit 2.0 s)"


def test_a_chunk_over_the_target_while_the_replica_lags_shrinks_to_the_budget_and_lets_waiters_drain() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=400, replay_lag_ms=3_500))  # not watched
    assert decision.chunk_rows == 175  # the 70 ms budget at 2.5 rows per ms, not half of 1,000
    assert decision.pause_ms == 400  # as long as it took, not the 250 ms lag poll
    assert decision.slowed_because == "replica replay lag 3.5 s (limit 2.0 s); chunk of 1000 rows took 400 ms (target 100 ms)"


def test_a_chunk_just_over_the_target_while_the_replica_lags_is_halved_when_half_is_under_the_budget_and_waits_the_lag_poll() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=110, replay_lag_ms=3_500))  # not watched
    assert decision.chunk_rows == 500  # half; the budget would allow 636
    assert decision.pause_ms == 250  # the lag poll is longer than what waiters need to drain (110 ms)


def test_a_stretched_chunk_nobody_waited_on_while_the_replica_lags_waits_only_for_the_lag_poll() -> None:
    throttle = stretched()
    decision = throttle.next(Observation(rows=3_500, duration_ms=600, replay_lag_ms=3_500, waiter_ms=0.0))
    assert decision.pause_ms == 250  # no queue formed behind it: nobody waited
    assert decision.chunk_rows == 1_750  # half; the stretched budget would allow 2,041


def test_replay_lag_over_half_the_limit_stops_growth() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=5, replay_lag_ms=1_500))
    assert decision.chunk_rows == 1_000
    assert "over half the limit" in (decision.slowed_because or "")


def test_chunk_size_stays_within_the_stack_bounds() -> None:
    bounded = ThrottleSettings(min_chunk_rows=300, max_chunk_rows=1_500, initial_chunk_rows=1_000)
    throttle = AdaptiveThrottle(bounded)
    assert throttle.next(Observation(rows=1_000, duration_ms=1)).chunk_rows == 1_500
    assert throttle.next(Observation(rows=1_500, duration_ms=10_000)).chunk_rows == 300


def test_the_fixed_throttle_never_changes_size_or_pauses_except_on_lock_waits() -> None:
    fixed = FixedThrottle(1_000)
    assert fixed.next(Observation(rows=1_000, duration_ms=900)).pause_ms == 0
    assert fixed.next(Observation(0, 100, lock_wait=True)).pause_ms > 0
    assert fixed.chunk_rows == 1_000


def test_when_rows_get_dearer_the_chunks_after_an_over_target_one_stay_within_the_target() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    for _ in range(20):  # 10 rows per ms
        throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=throttle.chunk_rows / 10))
    durations = []
    for _ in range(10):  # each row now costs four times as much
        duration = throttle.chunk_rows * 0.4
        durations.append(duration)
        throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=duration))
    assert durations[0] > 100  # the first chunk at the old size could not know
    assert max(durations[1:]) <= 70


def test_a_full_chunk_after_a_lock_wait_counts_and_a_replica_poll_does_not() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    throttle.next(Observation(0, 100, lock_wait=True))  # halved to 500
    throttle.next(Observation(0, 0.0, replay_lag_ms=100))  # a poll: no rows, no cost
    decision = throttle.next(Observation(rows=500, duration_ms=25))  # 20 rows per ms
    assert decision.chunk_rows == 1_000  # growth capped at twice; the budget would allow 1,400
    for _ in range(5):
        decision = throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=throttle.chunk_rows / 20))
    assert decision.chunk_rows == 1_400


def test_commits_stalling_after_a_chunk_pause_the_next_with_exponential_backoff_at_the_same_size() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    stalled = [throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=20, commit_wait_ms=80)) for _ in range(3)]
    assert [d.chunk_rows for d in stalled] == [1_000, 1_000, 1_000]
    assert [d.pause_ms for d in stalled] == [100, 200, 400]
    assert stalled[0].slowed_because == "commits stalling: a commit waited 80 ms longer than usual (target 100 ms)"
    healthy = throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=20, commit_wait_ms=2))
    assert healthy.pause_ms == 0 and healthy.chunk_rows == 2_000  # grows again, at most twofold
    again = throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=40, commit_wait_ms=80))
    assert again.pause_ms == 100  # the backoff starts over


def test_a_chunk_over_the_target_while_commits_stall_shrinks_and_pauses_as_much_as_either_signal_asks() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=400, commit_wait_ms=80))
    assert decision.chunk_rows == 175  # the 70 ms budget at 2.5 rows per ms
    assert decision.pause_ms == 400  # as long as the chunk took (the backoff alone would give 100)
    after = throttle.next(Observation(rows=175, duration_ms=30))  # its cost per row replaced the average
    assert after.chunk_rows <= 350 and after.pause_ms == 0


def test_commits_slowing_but_not_stalling_stop_growth_and_pause_as_long_as_the_chunk_took() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=5, commit_wait_ms=30))  # the chunk alone would double
    assert decision.chunk_rows == 1_000
    assert decision.pause_ms == 5  # the backfill runs at most half the time while commits are slow
    assert decision.slowed_because == ("commits slowing: a commit waited 30 ms longer than usual (a pause as long as "
                                       "the chunk took)")
    recovered = throttle.next(Observation(rows=1_000, duration_ms=5, commit_wait_ms=3))
    assert recovered.pause_ms == 0 and recovered.chunk_rows == 2_000


def test_commits_slowing_while_the_chunk_budget_stopped_growth_name_both() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=90, commit_wait_ms=30))
    assert decision.chunk_rows < 1_000 and decision.pause_ms == 90
    assert (decision.slowed_because or "").startswith("chunk of 1000 rows took 90 ms")
    assert "commits slowing: a commit waited 30 ms" in (decision.slowed_because or "")


def test_a_stretched_chunk_over_its_limit_that_nobody_waited_on_pauses_only_while_commits_slow() -> None:
    throttle = stretched()
    rows = throttle.chunk_rows
    calm = throttle.next(Observation(rows=rows, duration_ms=600, waiter_ms=0, commit_wait_ms=3))
    assert calm.pause_ms == 0
    slow = throttle.next(Observation(rows=calm.chunk_rows, duration_ms=600, waiter_ms=0, commit_wait_ms=30))
    assert slow.pause_ms == 600
    assert "took 600 ms" in (slow.slowed_because or "") and "commits slowing" in (slow.slowed_because or "")


def test_slowing_begins_over_a_fifth_of_the_target_and_stalling_over_a_half() -> None:
    def pause_after(wait_ms: float) -> float:
        return AdaptiveThrottle(SETTINGS).next(Observation(rows=1_000, duration_ms=30, commit_wait_ms=wait_ms)).pause_ms
    assert pause_after(20) == 0  # usual
    assert pause_after(21) == 30  # slowing: as long as the chunk took
    assert pause_after(50) == 30  # still slowing
    assert pause_after(51) == 100  # stalling: the backoff's first step


def test_readings_that_go_from_stalling_to_slowing_and_back_keep_the_backoff_growing() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    waits = [80, 30, 80, 30, 80, 3, 80]
    pauses = [throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=20, commit_wait_ms=w)).pause_ms
              for w in waits]
    assert pauses == [100, 20, 200, 20, 400, 0, 100]  # it starts over only once a probe is back to usual


def test_a_chunk_cancelled_at_its_timeout_while_commits_slow_is_followed_by_a_pause_as_long_as_it_ran() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=95, cancelled=True, commit_wait_ms=30))
    assert decision.chunk_rows == 500 and decision.pause_ms == 95
    assert "commits slowing: a commit waited 30 ms" in (decision.slowed_because or "")


def test_a_chunk_cancelled_for_a_waiter_while_commits_slow_is_followed_by_a_pause_as_long_as_it_ran() -> None:
    throttle = stretched()
    calm = throttle.next(Observation(rows=1_000, duration_ms=60, cancelled_for_waiter=True, waiter_ms=55,
                                     commit_wait_ms=3))
    assert calm.pause_ms == 0  # its locks are released
    slow = stretched().next(Observation(rows=1_000, duration_ms=60, cancelled_for_waiter=True, waiter_ms=55,
                                        commit_wait_ms=30))
    assert slow.pause_ms == 60
    assert "cancelled at 60 ms" in (slow.slowed_because or "") and "commits slowing" in (slow.slowed_because or "")


def test_a_chunk_cancelled_for_a_waiter_while_commits_stall_backs_off_at_least_as_long_as_it_ran() -> None:
    throttle = stretched()
    first = throttle.next(Observation(rows=1_000, duration_ms=60, cancelled_for_waiter=True, waiter_ms=55,
                                      commit_wait_ms=80))
    # the stall's backoff starts at the target, longer than the 60 ms it ran; the size is the budget's (70 ms at
    # 0.1 ms a row), not halved: the stall keeps the size, the waiter brings it within the budget
    assert (first.chunk_rows, first.pause_ms) == (700, 100)
    assert first.slowed_because is not None and first.slowed_because.endswith(
        "rolled back; commits stalling: a commit waited 80 ms longer than usual")
    long_run = stretched().next(Observation(rows=4_000, duration_ms=240, cancelled_for_waiter=True, waiter_ms=55,
                                            commit_wait_ms=80))
    assert (long_run.chunk_rows, long_run.pause_ms) == (700, 240)


def test_the_stall_backoff_keeps_growing_through_a_cancelled_chunk_and_starts_over_after_a_calm_one() -> None:
    throttle = stretched()
    kept = Observation(rows=1_000, duration_ms=10, commit_wait_ms=80)
    cancelled = Observation(rows=1_000, duration_ms=60, cancelled_for_waiter=True, waiter_ms=55, commit_wait_ms=80)
    calm_cancel = Observation(rows=1_000, duration_ms=60, cancelled_for_waiter=True, waiter_ms=55, commit_wait_ms=3)
    pauses = [throttle.next(seen).pause_ms for seen in (kept, cancelled, kept, calm_cancel, kept)]
    assert pauses == [100, 200, 400, 0, 100]


def test_only_timeout_cancellations_in_a_row_back_off_a_chunk_the_watch_cancelled_is_not_one_of_them() -> None:
    throttle = stretched()
    throttle.next(Observation(rows=1_000, duration_ms=60, cancelled_for_waiter=True, waiter_ms=55))
    after_watch = throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=95, cancelled=True))
    assert after_watch.pause_ms == 0
    again = throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=95, cancelled=True, commit_wait_ms=30))
    assert again.pause_ms == 100  # the second in a row backs off, slowing or not


def test_replay_lag_and_commits_slowing_are_both_named_and_the_pause_is_the_longer() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    over_limit = throttle.next(Observation(rows=1_000, duration_ms=400, replay_lag_ms=3_000, commit_wait_ms=30))
    assert over_limit.pause_ms == 400  # the chunk's own duration, longer than the lag poll
    because = over_limit.slowed_because or ""
    assert because.startswith("replica replay lag 3.0 s") and "commits slowing" in because
    near = AdaptiveThrottle(SETTINGS).next(Observation(rows=1_000, duration_ms=90, replay_lag_ms=1_500,
                                                       commit_wait_ms=30))
    because = near.slowed_because or ""
    assert near.pause_ms == 90
    assert "over half the limit" in because and "took 90 ms" in because and "commits slowing" in because


def test_a_commit_about_as_fast_as_usual_is_no_signal() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    assert throttle.next(Observation(rows=1_000, duration_ms=5, commit_wait_ms=19)).chunk_rows == 2_000


def test_a_chunk_cancelled_at_its_timeout_halves_the_next_and_cancellations_in_a_row_back_off() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    assert SETTINGS.chunk_timeout_ms == 90
    cancelled = [throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=95, cancelled=True)) for _ in range(4)]
    assert [d.chunk_rows for d in cancelled] == [500, 250, 125, 100]
    assert [d.pause_ms for d in cancelled] == [0, 100, 200, 400]  # the second in a row waits at least as long as it ran
    throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=60))
    assert throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=95, cancelled=True)).pause_ms == 0
    assert cancelled[0].slowed_because == "chunk of 1000 rows cancelled at 95 ms (limit 90 ms) and rolled back"


def test_a_chunk_cancelled_while_commits_stall_backs_off_at_once() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = throttle.next(Observation(rows=1_000, duration_ms=95, cancelled=True, commit_wait_ms=80))
    assert (decision.chunk_rows, decision.pause_ms) == (500, 100)
    assert decision.slowed_because == ("chunk of 1000 rows cancelled at 95 ms (limit 90 ms) and rolled back; "
                                       "commits stalling: a commit waited 80 ms longer than usual")


def test_after_a_cancelled_chunk_the_size_grows_back_from_its_cost_not_from_the_cheaper_average() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    throttle.next(Observation(rows=1_000, duration_ms=10))  # 0.01 ms per row: would aim at 7,000
    throttle.next(Observation(rows=2_000, duration_ms=95, cancelled=True))  # at least 0.0475 ms per row
    after = throttle.next(Observation(rows=1_000, duration_ms=10))
    assert after.chunk_rows == 1_931 and after.pause_ms == 0  # 70 ms at 0.3 * 0.01 + 0.7 * 0.0475 ms per row


def chunks_nobody_waited_on(throttle: AdaptiveThrottle, count: int, rows_per_ms: float = 10.0) -> Decision:
    decision = Decision(throttle.chunk_rows, 0.0)
    for _ in range(count):
        decision = throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=throttle.chunk_rows / rows_per_ms,
                                             waiter_ms=0.0))
    return decision


def stretched() -> AdaptiveThrottle:
    """A throttle whose limits have stretched: more than CALM_CHUNKS chunks in a row that nobody waited on."""
    throttle = AdaptiveThrottle(SETTINGS)
    chunks_nobody_waited_on(throttle, CALM_CHUNKS + 10)
    return throttle


def test_chunks_keep_to_the_budget_until_100_in_a_row_had_nobody_waiting_on_them() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    assert chunks_nobody_waited_on(throttle, CALM_CHUNKS - 1).chunk_rows == 700
    assert throttle.limits == ChunkLimits(over_ms=100, budget_ms=70, timeout_ms=90, patience_ms=None)


def test_then_they_grow_to_a_stretched_budget_of_350_ms_time_out_at_1_s_and_are_cancelled_after_50_ms_of_someone_waiting() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    decision = chunks_nobody_waited_on(throttle, CALM_CHUNKS + 10)
    assert decision.chunk_rows == 3_500  # 350 ms at 10 rows per ms
    assert decision.slowed_because is None
    assert throttle.limits == ChunkLimits(over_ms=500, budget_ms=350, timeout_ms=1_000, patience_ms=50)


def test_without_the_lock_watch_chunks_always_keep_to_the_budget() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    for _ in range(CALM_CHUNKS * 2):
        decision = throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=throttle.chunk_rows / 10))
    assert decision.chunk_rows == 700
    assert throttle.limits.patience_ms is None


def test_a_vacuum_of_the_parts_table_brings_stretched_chunks_back_to_the_budget_until_it_ends_without_a_pause() -> None:
    throttle = stretched()
    throttle.beside_vacuum('"Lead"')
    assert throttle.chunk_rows == 700  # at once, from the cost per row: 70 ms at 10 rows per ms
    assert throttle.limits == ChunkLimits(over_ms=100, budget_ms=70, timeout_ms=90, patience_ms=None)
    assert throttle.last_slowdown == 'a vacuum is working on "Lead": chunks keep to the 70 ms budget until it ends'
    beside = chunks_nobody_waited_on(throttle, 20)
    assert beside.chunk_rows == 700 and beside.pause_ms == 0  # it does not stop them

    throttle.beside_vacuum(None)
    assert throttle.limits.budget_ms == 350  # the calm it had counted still holds
    assert chunks_nobody_waited_on(throttle, 3).chunk_rows == 3_500


def test_a_vacuum_beside_chunks_already_within_the_budget_changes_nothing_and_says_nothing() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    chunks_nobody_waited_on(throttle, 10)
    before = throttle.last_slowdown
    throttle.beside_vacuum('"Lead"')
    assert throttle.chunk_rows == 700
    assert throttle.last_slowdown == before


def test_a_new_part_forgets_the_vacuum_of_the_last_ones_table() -> None:
    throttle = stretched()
    throttle.beside_vacuum('"Lead"')
    throttle.start_part()
    chunks_nobody_waited_on(throttle, CALM_CHUNKS + 10)
    assert throttle.limits.budget_ms == 350


def test_a_session_waiting_on_a_stretched_chunk_brings_the_part_back_to_the_budget_at_once_and_for_good() -> None:
    throttle = stretched()
    decision = throttle.next(Observation(rows=3_500, duration_ms=350, waiter_ms=30))
    assert decision.chunk_rows == 700
    assert decision.pause_ms == 0
    assert decision.slowed_because == ("a session waited 30 ms on the backfill's locks (this part's chunks keep to the "
                                       "70 ms budget)")
    assert chunks_nobody_waited_on(throttle, CALM_CHUNKS * 2).chunk_rows == 700  # the application writes these rows
    assert throttle.limits.patience_ms is None


def test_the_next_part_counts_its_own_chunks_nobody_waited_on_again() -> None:
    throttle = stretched()
    throttle.next(Observation(rows=3_500, duration_ms=350, waiter_ms=30))
    throttle.start_part()
    assert chunks_nobody_waited_on(throttle, CALM_CHUNKS + 10).chunk_rows == 3_500


def test_a_chunk_the_watch_did_not_see_to_its_end_brings_the_next_back_to_the_budget_and_says_so() -> None:
    throttle = stretched()
    decision = throttle.next(Observation(rows=3_500, duration_ms=350))  # not watched: a wait may have gone unseen
    assert decision.chunk_rows == 700
    assert decision.slowed_because == ("the lock watch did not see the chunk of 3500 rows to its end (chunks keep to "
                                       "the 70 ms budget)")
    assert throttle.limits.patience_ms is None
    assert chunks_nobody_waited_on(throttle, CALM_CHUNKS + 10).chunk_rows == 3_500  # unseen is not a wait: counts again


def test_a_chunk_too_short_for_the_patience_neither_counts_nor_ends_the_stretched_limits() -> None:
    throttle = stretched()
    decision = throttle.next(Observation(rows=51, duration_ms=10))  # the end of a pass, too short to be seen
    assert decision.slowed_because is None
    assert throttle.limits.patience_ms == 50
    fresh = AdaptiveThrottle(SETTINGS)
    chunks_nobody_waited_on(fresh, CALM_CHUNKS - 1)
    fresh.next(Observation(rows=51, duration_ms=10))
    assert fresh.limits.patience_ms is None  # it did not count as the hundredth


def test_a_chunk_the_lock_watch_cancelled_is_followed_by_one_within_the_budget_from_what_it_cost_so_far() -> None:
    throttle = stretched()
    decision = throttle.next(Observation(rows=3_500, duration_ms=700, cancelled_for_waiter=True, waiter_ms=52))
    assert decision.chunk_rows == 350  # it ran 700 ms over 3,500 rows without finishing: 5 rows per ms at most
    assert decision.pause_ms == 0  # its locks are released already
    assert decision.slowed_because == ("a session waited 52 ms on the backfill's locks (this part's chunks keep to the "
                                       "70 ms budget): chunk of 3500 rows cancelled at 700 ms and rolled back")
    assert chunks_nobody_waited_on(throttle, CALM_CHUNKS * 2).chunk_rows == 700
    assert throttle.limits.patience_ms is None


def test_a_new_part_starts_within_the_budget_until_its_own_chunks_had_nobody_waiting() -> None:
    throttle = stretched()
    throttle.start_part()
    assert throttle.limits.patience_ms is None
    assert throttle.chunk_rows == 700  # the stretched size brought within the budget, not cancelled at 90 ms first


def test_a_lock_wait_of_the_chunks_own_brings_the_budget_back_and_the_count_starts_again() -> None:
    """Its own rows are taken with SKIP LOCKED: it waited on a key or a table, not on the part's rows."""
    throttle = stretched()
    throttle.next(Observation(rows=0, duration_ms=70, lock_wait=True))
    assert throttle.limits.patience_ms is None
    chunks_nobody_waited_on(throttle, CALM_CHUNKS + 10)
    assert throttle.limits.patience_ms == 50


def test_a_session_waiting_on_a_stretched_chunk_that_ran_into_its_timeout_keeps_the_part_within_the_budget() -> None:
    throttle = stretched()
    throttle.next(Observation(rows=3_500, duration_ms=1_000, cancelled=True, waiter_ms=20))
    chunks_nobody_waited_on(throttle, CALM_CHUNKS * 2)
    assert throttle.limits.patience_ms is None


def test_a_session_seen_waiting_on_a_chunk_shorter_than_the_patience_still_keeps_the_part_within_the_budget() -> None:
    throttle = stretched()
    throttle.next(Observation(rows=51, duration_ms=10, waiter_ms=5))
    chunks_nobody_waited_on(throttle, CALM_CHUNKS * 2)
    assert throttle.limits.patience_ms is None


def test_a_stretched_chunk_cancelled_at_its_timeout_halves_within_the_stretched_limits() -> None:
    throttle = stretched()
    decision = throttle.next(Observation(rows=3_500, duration_ms=1_000, cancelled=True, waiter_ms=0.0))
    assert decision.chunk_rows == 1_750
    assert decision.slowed_because == "chunk of 3500 rows cancelled at 1000 ms (limit 1000 ms) and rolled back"
    assert throttle.limits.patience_ms == 50  # a stall is not a session waiting: the next chunk is watched as before


def test_a_session_waiting_on_a_chunk_within_the_budget_is_not_what_slowed_it_down() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    chunks_nobody_waited_on(throttle, 20)
    decision = throttle.next(Observation(rows=700, duration_ms=95, waiter_ms=3))
    assert decision.slowed_because == "chunk of 700 rows took 95 ms (budget 70 ms)"


def test_a_session_waiting_before_the_limits_stretched_keeps_the_part_from_ever_stretching() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    chunks_nobody_waited_on(throttle, 20)
    throttle.next(Observation(rows=700, duration_ms=60, waiter_ms=3))
    assert chunks_nobody_waited_on(throttle, CALM_CHUNKS * 2).chunk_rows == 700


def test_a_chunk_over_its_stretched_limit_that_nobody_waited_on_shrinks_without_a_pause_and_says_which_limit() -> None:
    throttle = stretched()
    decision = throttle.next(Observation(rows=3_500, duration_ms=700, waiter_ms=0.0))
    assert decision.chunk_rows == 1_750 and decision.pause_ms == 0  # no queue formed behind it: nothing to drain
    assert decision.slowed_because == "chunk of 3500 rows took 700 ms (limit 500 ms while nobody waits on its locks)"


def test_a_stretched_chunk_over_its_limit_that_a_session_waited_on_pauses_as_long_as_it_took() -> None:
    throttle = stretched()
    assert throttle.next(Observation(rows=3_500, duration_ms=700, waiter_ms=30)).pause_ms == 700


def test_a_chunk_over_the_target_within_the_budget_limits_pauses_though_nobody_waited_on_it() -> None:
    """Its statement timeout is under the target: running over it means the commit or the server stalled."""
    throttle = AdaptiveThrottle(SETTINGS)
    assert throttle.next(Observation(rows=1_000, duration_ms=400, waiter_ms=0.0)).pause_ms == 400


def test_a_read_before_the_checks_over_its_limit_pauses_as_long_as_it_took() -> None:
    """Reads hold no row lock anyone waits on; what they cost is WAL, and the pause lets the disk catch up."""
    throttle = AdaptiveThrottle(SETTINGS, stretch=False)
    chunks_nobody_waited_on(throttle, CALM_CHUNKS + 10)
    assert throttle.next(Observation(rows=700, duration_ms=150, waiter_ms=0.0)).pause_ms == 150


def test_a_stretched_chunk_over_its_limit_while_commits_stall_pauses_at_least_as_long_as_it_took() -> None:
    throttle = stretched()
    decision = throttle.next(Observation(rows=3_500, duration_ms=700, waiter_ms=0.0, commit_wait_ms=80))
    assert decision.pause_ms == 700  # a queue on WAL flushes, which no lock shows


def test_reads_before_the_checks_never_stretch_their_limits() -> None:
    throttle = AdaptiveThrottle(SETTINGS, stretch=False)
    assert chunks_nobody_waited_on(throttle, CALM_CHUNKS * 2).chunk_rows == 700
    assert throttle.limits.patience_ms is None


def test_a_session_waiting_while_commits_stall_still_brings_the_next_chunk_within_the_budget() -> None:
    throttle = stretched()
    decision = throttle.next(Observation(rows=3_500, duration_ms=350, waiter_ms=30, commit_wait_ms=80))
    assert decision.chunk_rows == 700  # the stall keeps the size, the waiter brings it within the budget
    assert decision.pause_ms == 100


def test_a_chunk_is_kept_unless_rolled_back_or_its_locks_not_taken_in_time() -> None:
    assert Observation(rows=500, duration_ms=40).kept
    assert not Observation(rows=500, duration_ms=91, cancelled=True).kept
    assert not Observation(rows=500, duration_ms=60, cancelled_for_waiter=True, waiter_ms=50).kept
    assert not Observation(rows=0, duration_ms=70, lock_wait=True).kept


def test_with_stretching_off_the_limits_stay_at_the_budget_however_long_nobody_waits() -> None:
    throttle = AdaptiveThrottle(ThrottleSettings(stretch_uncontended=False))
    for _ in range(CALM_CHUNKS + 10):
        throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=throttle.chunk_rows / 10, waiter_ms=0))
    assert throttle.limits.patience_ms is None
    assert throttle.limits.budget_ms == 70
    assert throttle.chunk_rows == 700


def around_a_checkpoint(wal_left_mb: list[float], seconds_left: float = 600.0,
                        kb_a_row: list[float] | None = None) -> list[Decision]:
    """Chunks of 0.05 ms a row, each writing 10 kB of WAL a row (or as kb_a_row says, chunk by chunk), with the next
    checkpoint this far after each."""
    throttle = AdaptiveThrottle(SETTINGS)
    at, decisions = 0, []
    for i, left in enumerate(wal_left_mb):
        rows = throttle.chunk_rows
        at += int(rows * (kb_a_row[i] if kb_a_row else 10) * 1024)
        checkpoint = CheckpointAhead(left * 2 ** 20, seconds_left, at)
        decisions.append(throttle.next(Observation(rows=rows, duration_ms=rows * 0.05, checkpoint=checkpoint)))
    return decisions


def test_a_checkpoint_far_ahead_changes_nothing() -> None:
    far = around_a_checkpoint([5_000, 4_990, 4_970])
    assert [d.chunk_rows for d in far] == [1_400, 1_400, 1_400]  # the 70 ms budget at 0.05 ms a row
    assert all(d.slowed_because is None for d in far)


def test_the_chunks_up_to_a_checkpoints_start_take_an_eighth_and_run_half_the_time_then_wait_a_second() -> None:
    # 1,400 rows write about 14 MB: a checkpoint 20 MB ahead is within two chunks
    decisions = around_a_checkpoint([5_000, 1_000, 20, 18, -2, -30, -60, -120])
    assert [d.chunk_rows for d in decisions] == [1_400, 1_400, 175, 175, 100, 200, 400, 800]
    assert [d.pause_ms for d in decisions] == [0, 0, 70, 8.75, 1_000, 0, 0, 0]  # each as long as the chunk took
    assert "a checkpoint starts within 20.0 MB of WAL" in (decisions[2].slowed_because or "")
    assert (decisions[4].slowed_because or "").startswith("a checkpoint has just started")
    # from the smallest chunk; its rows write what they did before, so they grow back at once, doubling
    assert "a pause of 1000 ms, then chunks from 100 rows" in (decisions[4].slowed_because or "")


def test_after_a_checkpoints_start_chunks_write_no_more_wal_than_one_before_it_until_rows_write_as_before() -> None:
    # Before: 1,400 rows of 10 kB, 14,000 kB a chunk. After: 80 kB a row (whole pages), then 40, then 12.
    decisions = around_a_checkpoint([5_000, 1_000, 20, 18, -2, -30, -60, -90, -120, -150],
                                    kb_a_row=[10, 10, 10, 10, 10, 80, 80, 40, 12, 40])
    # 14,000 kB at 80, then 40 kB a row; at 12 kB, within 1.5 times, the pages have been copied: 40 kB no longer caps
    assert [d.chunk_rows for d in decisions[4:]] == [100, 175, 175, 350, 700, 1_400]
    assert [d.pause_ms for d in decisions[4:]] == [1_000, 0, 0, 0, 0, 0]
    assert "a row writes 80.0 kB of WAL against 10.0 kB before (whole pages): chunks of 175 rows" in (
        decisions[5].slowed_because or "")
    assert decisions[8].slowed_because is None and decisions[9].slowed_because is None


def test_after_a_checkpoints_start_the_wal_caps_chunks_for_50_readings_at_most() -> None:
    # the WAL a row stays 8 times what it was: the application's own whole pages, which smaller chunks do not help
    decisions = around_a_checkpoint([5_000, 1_000, -2] + [-10.0 - i for i in range(FULL_PAGES_CHUNKS + 3)],
                                    kb_a_row=[10, 10, 10] + [80] * (FULL_PAGES_CHUNKS + 3))
    paced = decisions[3:3 + FULL_PAGES_CHUNKS]
    assert {d.chunk_rows for d in paced[1:]} == {175}
    assert [d.chunk_rows for d in decisions[3 + FULL_PAGES_CHUNKS:]] == [350, 700, 1_400]


def paced_after_a_start() -> tuple[AdaptiveThrottle, int]:
    """A throttle whose chunks are paced by their WAL after a checkpoint's start: 10 kB a row before it, 80 kB
    after (chunks of 175 rows). Also returns the WAL position of the last reading."""
    throttle = AdaptiveThrottle(SETTINGS)
    mb, at = 2 ** 20, 0
    for left, kb in [(5_000, 10), (1_000, 10), (-2, 10), (-30, 80)]:
        rows = throttle.chunk_rows
        at += rows * kb * 1024
        throttle.next(Observation(rows=rows, duration_ms=rows * 0.05, checkpoint=CheckpointAhead(left * mb, 600.0, at)))
    assert throttle.chunk_rows == 175
    return throttle, at


def test_a_new_part_during_the_pacing_after_a_start_is_not_paced_by_the_last_parts_wal() -> None:
    throttle, at = paced_after_a_start()
    throttle.start_part()  # its rows write their own WAL a row, unknown before the start
    rows = throttle.chunk_rows
    decision = throttle.next(Observation(rows=rows, duration_ms=rows * 0.05,
                                         checkpoint=CheckpointAhead(-60 * 2 ** 20, 600.0, at + rows * 80 * 1024)))
    assert decision.chunk_rows == 350 and decision.slowed_because is None


def test_after_a_checkpoints_start_a_chunk_not_kept_is_followed_by_one_no_larger_than_the_wal_allows() -> None:
    throttle, _ = paced_after_a_start()
    cancelled = throttle.next(Observation(rows=175, duration_ms=95, cancelled=True))
    assert cancelled.chunk_rows == 100  # halved, within the 175 the WAL allows
    again = throttle.next(Observation(rows=100, duration_ms=5))  # kept, but no reading after it
    assert again.chunk_rows == 175  # not the 200 a doubling would give
    assert (again.slowed_because or "").startswith("a checkpoint has started: chunks of 175 rows at most")


def test_a_checkpoint_due_by_time_within_two_chunks_and_a_second_shrinks_them_too() -> None:
    decisions = around_a_checkpoint([5_000, 4_990, 4_980], seconds_left=1.1)
    assert [d.chunk_rows for d in decisions] == [175, 175, 175]
    assert "a checkpoint starts within 1.1 s" in (decisions[0].slowed_because or "")


def test_a_checkpoint_already_under_way_when_first_read_or_long_since_changes_nothing() -> None:
    under_way = around_a_checkpoint([-500, -520, -540])
    assert [d.chunk_rows for d in under_way] == [1_400, 1_400, 1_400]
    assert all(d.slowed_because is None for d in under_way)


def test_without_a_checkpoint_reading_the_throttle_sizes_as_before() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    assert throttle.next(Observation(rows=1_000, duration_ms=50, checkpoint=None)).chunk_rows == 1_400


def test_a_checkpoint_that_started_sooner_than_foreseen_still_gets_a_small_chunk_after_its_start() -> None:
    decisions = around_a_checkpoint([5_000, 1_000, -5, -40])
    assert [d.chunk_rows for d in decisions] == [1_400, 1_400, 100, 200]
    assert [d.pause_ms for d in decisions] == [0, 0, 1_000, 0]


def test_the_wal_of_a_wait_between_two_readings_is_not_counted_as_the_next_chunks() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    mb = 2 ** 20

    def chunk(at_mb: float, left_mb: float) -> Decision:
        rows = throttle.chunk_rows
        return throttle.next(Observation(rows=rows, duration_ms=rows * 0.05,
                                         checkpoint=CheckpointAhead(left_mb * mb, 600.0, int(at_mb * mb))))
    chunk(10, 5_000)
    chunk(24, 4_986)  # 14 MB for 1,400 rows: a window of 28 MB
    throttle.next(Observation(rows=0, duration_ms=0, replay_lag_ms=100))  # a wait: 2 GB of the application's WAL
    assert chunk(2_062, 100).chunk_rows == 1_400  # 100 MB ahead is not within two chunks
    assert chunk(2_076, 20).chunk_rows == 175


def test_a_new_part_near_a_checkpoint_shrinks_from_its_own_size_not_the_last_parts() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    mb = 2 ** 20
    throttle.next(Observation(rows=1_000, duration_ms=5, checkpoint=CheckpointAhead(5_000 * mb, 600.0, 0)))
    throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=10,
                              checkpoint=CheckpointAhead(40 * mb, 600.0, 20 * mb)))  # 2,000 rows, 20 MB
    assert throttle.chunk_rows == 500  # near: an eighth of 4,000
    throttle.start_part()
    rows = throttle.chunk_rows
    decision = throttle.next(Observation(rows=rows, duration_ms=rows * 0.5, checkpoint=CheckpointAhead(0.5 * mb, 1.0, 21 * mb)))
    assert decision.chunk_rows == 100  # an eighth of this part's 140 (0.5 ms a row), within the bounds


def test_a_chunk_the_watch_cancelled_while_a_checkpoint_is_near_is_followed_by_one_still_small() -> None:
    throttle = stretched()  # stretched chunks of 0.1 ms a row: the budget after a waiter is 700 rows
    mb = 2 ** 20
    throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=300, waiter_ms=0,
                              checkpoint=CheckpointAhead(5_000 * mb, 600.0, 0)))
    near = throttle.next(Observation(rows=throttle.chunk_rows, duration_ms=300, waiter_ms=0,
                                     checkpoint=CheckpointAhead(1 * mb, 600.0, 30 * mb)))
    small = near.chunk_rows
    cancelled = throttle.next(Observation(rows=small, duration_ms=60, cancelled_for_waiter=True, waiter_ms=55))
    assert cancelled.chunk_rows <= small  # not the 700 rows of the budget a waiter alone would give
    assert "a checkpoint starts soon" in (cancelled.slowed_because or "")


def test_the_lock_watch_looks_until_a_session_is_seen_waiting_on_the_part_and_again_from_the_next_part() -> None:
    throttle = AdaptiveThrottle(SETTINGS)
    assert throttle.hears_waiters
    chunks_nobody_waited_on(throttle, CALM_CHUNKS + 10)
    assert throttle.hears_waiters  # stretched: a waiter past the patience gets the chunk cancelled
    throttle.next(Observation(rows=3_500, duration_ms=350, waiter_ms=30))
    assert not throttle.hears_waiters  # the part keeps to the budget until it ends, whoever waits
    throttle.start_part()
    assert throttle.hears_waiters


def test_without_stretching_and_with_fixed_chunks_nobody_looks_for_waiters() -> None:
    assert not AdaptiveThrottle(SETTINGS, stretch=False).hears_waiters
    assert not AdaptiveThrottle(ThrottleSettings(stretch_uncontended=False)).hears_waiters
    assert not FixedThrottle().hears_waiters
