package asl

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// memRuntime is an in-memory Runtime whose clock only moves when SleepUntil
// is called, so retry and wait timing is exact and tests never sleep. It
// rejects a key used twice for the same kind of call: the engine's journal
// depends on keys being unique.
type memRuntime struct {
	t     testing.TB
	mu    sync.Mutex
	now   time.Time
	tasks map[string]func(TaskCall) (json.RawMessage, error) // by Resource
	rand  func(key string) float64
	// fallback runs resources tasks does not name.
	fallback func(TaskCall) (json.RawMessage, error)

	events   []Event
	sleeps   []sleepCall
	calls    []TaskCall
	keys     map[string]bool
	inflight int
	peak     int
	journal  map[string]answer
	// hold, when set, makes every Task call wait until at least that many are
	// in flight (or a short deadline passes), to make concurrency observable.
	hold int
}

type sleepCall struct {
	Key      string
	From, At time.Time
}

// answer is one journal entry: what the runtime answered for a key.
type answer struct {
	Result json.RawMessage
	Err    *Error
	Time   time.Time
	Float  float64
	Str    string
}

var t0 = time.Date(2026, 3, 14, 1, 59, 26, 0, time.UTC)

func newMem(t testing.TB) *memRuntime {
	return &memRuntime{t: t, now: t0, tasks: map[string]func(TaskCall) (json.RawMessage, error){},
		keys: map[string]bool{}, journal: map[string]answer{}}
}

func (m *memRuntime) use(kind, key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys[kind+" "+key] {
		m.t.Errorf("%s key %q used twice", kind, key)
	}
	m.keys[kind+" "+key] = true
}

func (m *memRuntime) Task(ctx context.Context, key string, c TaskCall) (json.RawMessage, error) {
	m.use("Task", key)
	m.mu.Lock()
	m.calls = append(m.calls, c)
	m.inflight++
	m.peak = max(m.peak, m.inflight)
	f := m.tasks[c.Resource]
	if f == nil {
		f = m.fallback
	}
	hold := m.hold
	m.mu.Unlock()
	defer func() { m.mu.Lock(); m.inflight--; m.mu.Unlock() }()
	if hold > 0 {
		deadline := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(deadline) {
			m.mu.Lock()
			n := m.inflight
			m.mu.Unlock()
			if n >= hold {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if f == nil {
		m.t.Errorf("no task for resource %q", c.Resource)
		return nil, &Error{Name: ErrTaskFailed, Cause: "no such resource"}
	}
	res, err := f(c)
	a := answer{Result: res}
	if err != nil {
		a.Err, _ = err.(*Error)
		if a.Err == nil {
			a.Err = &Error{Name: ErrTaskFailed, Cause: err.Error()}
		}
	}
	m.record("Task "+key, a)
	return res, err
}

func (m *memRuntime) record(key string, a answer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.journal[key] = a
}

func (m *memRuntime) SleepUntil(ctx context.Context, key string, at time.Time) error {
	m.use("SleepUntil", key)
	m.mu.Lock()
	m.sleeps = append(m.sleeps, sleepCall{Key: key, From: m.now, At: at})
	if at.After(m.now) {
		m.now = at
	}
	m.mu.Unlock()
	m.record("SleepUntil "+key, answer{})
	return ctx.Err()
}

func (m *memRuntime) Now(key string) time.Time {
	m.use("Now", key)
	m.mu.Lock()
	now := m.now
	m.mu.Unlock()
	m.record("Now "+key, answer{Time: now})
	return now
}

func (m *memRuntime) Random(key string) float64 {
	m.use("Random", key)
	r := 0.5
	if m.rand != nil {
		r = m.rand(key)
	}
	m.record("Random "+key, answer{Float: r})
	return r
}

func (m *memRuntime) UUID(key string) string {
	m.use("UUID", key)
	u := fmt.Sprintf("00000000-0000-4000-8000-%012d", len(m.journal))
	m.record("UUID "+key, answer{Str: u})
	return u
}

func (m *memRuntime) Record(e Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
}

func (m *memRuntime) eventTypes() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, e := range m.events {
		out = append(out, e.Type)
	}
	return out
}

// replayRuntime answers only from a journal and fails the test on any call
// the journal does not hold: what the engine does after a crash.
type replayRuntime struct {
	t       testing.TB
	mu      sync.Mutex
	journal map[string]answer
	events  []Event
}

func (r *replayRuntime) get(key string) answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.journal[key]
	if !ok {
		r.t.Errorf("replay made a call the journal does not hold: %s", key)
	}
	return a
}

func (r *replayRuntime) Task(ctx context.Context, key string, c TaskCall) (json.RawMessage, error) {
	a := r.get("Task " + key)
	if a.Err != nil {
		return nil, a.Err
	}
	return a.Result, nil
}
func (r *replayRuntime) SleepUntil(ctx context.Context, key string, at time.Time) error {
	r.get("SleepUntil " + key)
	return nil
}
func (r *replayRuntime) Now(key string) time.Time  { return r.get("Now " + key).Time }
func (r *replayRuntime) Random(key string) float64 { return r.get("Random " + key).Float }
func (r *replayRuntime) UUID(key string) string    { return r.get("UUID " + key).Str }
func (r *replayRuntime) Record(e Event)            { r.events = append(r.events, e) }

func cobj() ContextObject {
	return ContextObject{ExecutionID: "exec-1", ExecutionName: "first", StateMachineID: "wf-1", StateMachineName: "orders", StartTime: t0}
}

// canon re-encodes JSON so that outputs compare regardless of key order and spacing.
func canon(t testing.TB, s string) string {
	t.Helper()
	v, err := decodeValue([]byte(s))
	if err != nil {
		t.Fatalf("bad JSON %s: %v", s, err)
	}
	return string(encodeValue(v))
}

func mustParse(t testing.TB, def string) *Machine {
	t.Helper()
	m, err := Parse([]byte(def))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, def)
	}
	return m
}

func ok(v string) func(TaskCall) (json.RawMessage, error) {
	return func(TaskCall) (json.RawMessage, error) { return json.RawMessage(v), nil }
}

func echo(c TaskCall) (json.RawMessage, error) { return c.Payload(), nil }

func failWith(name, cause string) func(TaskCall) (json.RawMessage, error) {
	return func(TaskCall) (json.RawMessage, error) { return nil, &Error{Name: name, Cause: cause} }
}

func joinTypes(ts []string) string { return strings.Join(ts, " ") }
