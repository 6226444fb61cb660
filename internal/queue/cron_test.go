package queue

import (
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
	"github.com/robfig/cron/v3"
)

// cronCalls waits until env/fn has been called want times and every one of
// its invocations is finished, then checks that there was no extra call:
// the queue is quiet, so a duplicate tick would have been delivered.
func cronCalls(t *testing.T, q *Queue, inv *fakeInvoker, fn string, want int) []call {
	t.Helper()
	testutil.WaitFor(t, 15*time.Second, fn+" calls", func() bool {
		return len(inv.callsFor("dev", fn)) >= want && q.Depth("dev", fn) == 0
	})
	calls := inv.callsFor("dev", fn)
	if len(calls) != want {
		t.Fatalf("%s was called %d times; want %d", fn, len(calls), want)
	}
	return calls
}

func TestCronFiresOncePerTickAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)}
	inv := newFake()
	minutely := Function{Environment: "dev", Name: "report", Crons: []Cron{{Schedule: "* * * * *", Data: `{"job":"report"}`}}}
	open := func() *Queue {
		q := openQueue(t, dir, inv, func(c *Config) { c.Clock = clock.Now })
		mustSet(t, q, minutely)
		return q
	}

	q := open()
	// The entry starts now: the 10:00 tick, before it existed, never fires.
	clock.Set(time.Date(2026, 3, 1, 10, 1, 0, 0, time.UTC))
	q.wakeCron()
	calls := cronCalls(t, q, inv, "report", 1)
	if calls[0].body != `{"job":"report"}` || calls[0].header.Get(HeaderSource) != "cron" {
		t.Errorf("cron delivery: body %q headers %v", calls[0].body, calls[0].header)
	}
	got, err := q.Get(t.Context(), "dev", calls[0].header.Get(HeaderInvocationID))
	if err != nil || got.Source != "cron" || got.Status != v1.InvocationSucceeded {
		t.Errorf("cron invocation = %+v, %v", got, err)
	}
	q.wakeCron() // same tick again: nothing
	q.Close()

	// A restart at the same tick does not fire it again; the next tick fires.
	clock.Set(time.Date(2026, 3, 1, 10, 1, 10, 0, time.UTC))
	q = open()
	q.wakeCron()
	clock.Set(time.Date(2026, 3, 1, 10, 2, 0, 0, time.UTC))
	q.wakeCron()
	cronCalls(t, q, inv, "report", 2)
	q.Close()

	// Down for five ticks: one fires on start, the most recent, not five.
	clock.Set(time.Date(2026, 3, 1, 10, 7, 30, 0, time.UTC))
	q = open()
	q.wakeCron()
	calls = cronCalls(t, q, inv, "report", 3)
	got, _ = q.Get(t.Context(), "dev", calls[2].header.Get(HeaderInvocationID))
	if want := time.Date(2026, 3, 1, 10, 7, 30, 0, time.UTC); !got.Created.Equal(want) {
		t.Errorf("catch-up invocation created %s; want %s (the injected clock)", got.Created, want)
	}
	clock.Set(time.Date(2026, 3, 1, 10, 8, 0, 0, time.UTC))
	q.wakeCron()
	cronCalls(t, q, inv, "report", 4)
}

func TestCronEvery(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: start}
	inv := newFake()
	q := openQueue(t, t.TempDir(), inv, func(c *Config) { c.Clock = clock.Now })
	mustSet(t, q, Function{Environment: "dev", Name: "fast", Crons: []Cron{{Schedule: "@every 1s", Data: "tick"}}})
	q.wakeCron()
	clock.Set(start.Add(time.Second))
	q.wakeCron()
	cronCalls(t, q, inv, "fast", 1)
	clock.Set(start.Add(2 * time.Second))
	q.wakeCron()
	cronCalls(t, q, inv, "fast", 2)
	// 3.5 s later: one tick (the latest), not three.
	clock.Set(start.Add(5500 * time.Millisecond))
	q.wakeCron()
	cronCalls(t, q, inv, "fast", 3)
}

func TestCronEveryRealClock(t *testing.T) {
	inv := newFake()
	q := openQueue(t, t.TempDir(), inv, nil)
	mustSet(t, q, Function{Environment: "dev", Name: "fast", Crons: []Cron{{Schedule: "@every 1s"}}})
	testutil.WaitFor(t, 10*time.Second, "two ticks of @every 1s", func() bool { return len(inv.callsFor("dev", "fast")) >= 2 })
	calls := inv.callsFor("dev", "fast")
	if d := calls[1].at.Sub(calls[0].at); d < 500*time.Millisecond {
		t.Errorf("ticks %s apart; want about 1s", d)
	}
}

func TestInvalidScheduleIsRejectedAndTheRestRuns(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)
	clock := &fakeClock{t: start}
	inv := newFake()
	q := openQueue(t, t.TempDir(), inv, func(c *Config) { c.Clock = clock.Now })
	err := q.SetFunctions([]Function{
		{Environment: "dev", Name: "mixed", Crons: []Cron{{Schedule: "61 * * * *"}, {Schedule: "@hourly"}, {Schedule: "* * * * *"}}},
		{Environment: "dev", Name: "Bad_Name"},
	})
	if !v1.IsInvalid(err) || !strings.Contains(err.Error(), `"61 * * * *"`) || !strings.Contains(err.Error(), "dev/mixed") || !strings.Contains(err.Error(), "Bad_Name") {
		t.Fatalf("SetFunctions: %v; want Invalid naming the schedule and the bad function", err)
	}
	// The function and its valid schedules are configured anyway.
	if _, err := q.Enqueue(t.Context(), "dev", "mixed", nil, nil, ""); err != nil {
		t.Errorf("Enqueue to the function with a bad schedule: %v", err)
	}
	clock.Set(start.Add(30 * time.Second))
	q.wakeCron()
	cronCalls(t, q, inv, "mixed", 2) // the async one and the minutely tick
}

func TestLatestTick(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 7, 30, 0, time.UTC)
	for spec, want := range map[string]time.Time{
		"* * * * *":    time.Date(2026, 3, 1, 10, 7, 0, 0, time.UTC),
		"@hourly":      time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		"0 9 * * 1":    time.Date(2026, 2, 23, 9, 0, 0, 0, time.UTC), // Monday
		"30 10 7 3 *":  time.Date(2026, 3, 7, 10, 30, 0, 0, time.UTC).AddDate(-1, 0, 0),
		"*/15 * * * *": time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
	} {
		s, err := cron.ParseStandard(spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := latestTick(s, now); !got.Equal(want) {
			t.Errorf("latestTick(%q) = %s; want %s", spec, got, want)
		}
	}
}
