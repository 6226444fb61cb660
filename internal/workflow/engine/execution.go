package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/workflow/asl"
)

// History event types the engine reads or writes. The interpreter writes
// ExecutionStarted and how an execution ends (Succeeded, Failed, TimedOut);
// the engine writes ExecutionAborted, and ExecutionFailed when the
// interpreter stops on something other than a States Language error.
const (
	EventExecutionFailed   = "ExecutionFailed"
	EventExecutionAborted  = "ExecutionAborted"
	EventExecutionTimedOut = "ExecutionTimedOut"
)

// stopRequest is the cancellation cause of an execution that Stop aborts.
type stopRequest struct{ errName, cause string }

func (s *stopRequest) Error() string { return "execution stopped: " + s.errName }

// execution is one execution this engine runs, across the attempts it
// takes: an attempt ends early when the journal cannot be written, and the
// next one replays the journal.
type execution struct {
	e       *Engine
	env, id string

	mu      sync.Mutex
	stopReq *stopRequest
	cancel  context.CancelCauseFunc // the current attempt's; nil between attempts
	done    bool
	// workflow is known once the record is loaded; counted says the
	// observer was told the execution started and not yet that it ended.
	workflow string
	counted  bool
}

// stop asks the running attempt to abort; false when the loop has ended.
func (x *execution) stop(req *stopRequest) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done {
		return false
	}
	x.stopReq = req
	if x.cancel != nil {
		x.cancel(req)
	}
	return true
}

func (x *execution) loop(base context.Context) {
	defer func() {
		x.mu.Lock()
		x.done = true
		if x.counted {
			// Left RUNNING (shutting down): no longer running here.
			x.e.obs.ExecutionLeft(x.env, x.workflow)
			x.counted = false
		}
		x.mu.Unlock()
	}()
	log := x.e.log.With("environment", x.env, "execution", x.id)
	retry := backoff.Backoff{Base: x.e.backoff, Max: 30 * time.Second, After: x.e.after}
	for base.Err() == nil {
		err := x.attempt(base)
		if err == nil || base.Err() != nil {
			return
		}
		if v1.IsNotFound(err) {
			log.Warn("execution record vanished", "err", err)
			return
		}
		delay := retry.Next()
		log.Warn("execution interrupted; it resumes from its journal", "err", err, "in", delay)
		if !retry.Sleep(base, delay) {
			return
		}
	}
}

// attempt runs the interpreter once, from the start, against the journal.
// It returns nil once the execution is no longer RUNNING in the store.
func (x *execution) attempt(base context.Context) error {
	a, err := x.load(base)
	if err != nil || a == nil {
		return err
	}
	x.mu.Lock()
	req := x.stopReq
	x.mu.Unlock()
	if req != nil {
		return a.finish(v1.ExecutionAborted, nil, req.errName, req.cause)
	}
	x.mu.Lock()
	if !x.counted {
		x.workflow, x.counted = a.rec.Workflow, true
		x.e.obs.ExecutionStarted(x.env, x.workflow)
	}
	x.mu.Unlock()
	m, err := asl.Parse(a.rec.Definition)
	if err != nil {
		return a.finish(v1.ExecutionFailed, nil, "States.Runtime", fmt.Sprintf("the definition does not parse: %v", err))
	}

	spanCtx, span := x.e.startExecutionSpan(base, a.rec)
	var runErr error
	defer func() { endSpan(span, runErr) }()
	runCtx, cancel := context.WithCancelCause(spanCtx)
	defer cancel(nil)
	a.cancel = cancel
	x.mu.Lock()
	x.cancel = cancel
	if x.stopReq != nil {
		cancel(x.stopReq)
	}
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		x.cancel = nil
		x.mu.Unlock()
	}()

	cobj := asl.ContextObject{
		ExecutionID:      a.rec.ID,
		ExecutionName:    a.rec.ID,
		StateMachineName: a.rec.Workflow,
		StartTime:        a.rec.StartDate,
		Input:            a.rec.Input,
	}
	out, runErr := m.Run(runCtx, a.rec.Input, cobj, a)

	a.mu.Lock()
	broken := a.broken
	a.mu.Unlock()
	if broken != nil {
		return broken
	}
	var stop *stopRequest
	stopped := runCtx.Err() != nil && errors.As(context.Cause(runCtx), &stop)
	var aerr *asl.Error
	switch {
	case runErr == nil:
		// It finished before a stop could interrupt it: the work is done.
		return a.finish(v1.ExecutionSucceeded, out, "", "")
	case stopped:
		return a.finish(v1.ExecutionAborted, nil, stop.errName, stop.cause)
	case base.Err() != nil:
		return base.Err() // shutting down: RUNNING, to resume
	case errors.As(runErr, &aerr):
		a.mu.Lock()
		timedOut := a.last == EventExecutionTimedOut
		a.mu.Unlock()
		if timedOut {
			return a.finish(v1.ExecutionTimedOut, nil, aerr.Name, aerr.Cause)
		}
		return a.finish(v1.ExecutionFailed, nil, aerr.Name, aerr.Cause)
	default:
		return a.finish(v1.ExecutionFailed, nil, "States.Runtime", runErr.Error())
	}
}

// abortOffline aborts an execution no attempt is running.
func (x *execution) abortOffline(ctx context.Context, req *stopRequest) error {
	a, err := x.load(ctx)
	if err != nil {
		return err
	}
	if a == nil {
		return v1.Conflict("execution %q has already finished", x.id)
	}
	return a.finish(v1.ExecutionAborted, nil, req.errName, req.cause)
}

// load reads the record and journal into a fresh attempt; nil when the
// execution is no longer RUNNING.
func (x *execution) load(ctx context.Context) (*attempt, error) {
	rec, _, err := readRecord(ctx, x.e.st, x.env, x.id)
	if err != nil {
		return nil, err
	}
	if rec.Status != v1.ExecutionRunning {
		return nil, nil
	}
	entries, chunks, err := readJournal(ctx, x.e.st, x.env, x.id)
	if err != nil {
		return nil, err
	}
	a := &attempt{
		x:       x,
		ctx:     ctx,
		rec:     rec,
		seq:     chunks,
		answers: map[string]entry{},
		stored:  map[string][]v1.HistoryEvent{},
	}
	for _, en := range entries {
		if en.Event != nil {
			sig := signature(en.Event.Type, en.Event.StateName, en.Event.Details)
			a.stored[sig] = append(a.stored[sig], *en.Event)
			a.events++
			continue
		}
		a.answers[en.Key] = en
	}
	return a, nil
}

// attempt is one run of the interpreter; it is the asl.Runtime, answering
// from the journal what was asked before and journaling what is new.
type attempt struct {
	x      *execution
	ctx    context.Context // for store writes: outlives a stop, not a shutdown
	rec    record
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	seq     int              // next journal chunk
	answers map[string]entry // by key
	// stored holds the history events of earlier attempts not yet
	// re-emitted, by signature: a replay emits them again and they are
	// skipped. A multiset rather than a count, so that branches of a
	// Parallel or Map re-emitting in another order still match.
	stored  map[string][]v1.HistoryEvent
	events  int64   // history events stored or pending
	last    string  // the type of the last event the interpreter recorded
	pending []entry // history events not yet written
	broken  error   // the journal could not be written: this attempt is void
}

var _ asl.Runtime = (*attempt)(nil)

func signature(typ, state string, details json.RawMessage) string {
	if c, err := compact(details); err == nil {
		details = c
	}
	return typ + "\x00" + state + "\x00" + string(details)
}

// Record implements asl.Runtime.
func (a *attempt) Record(ev asl.Event) {
	a.x.e.entered(a.rec.Environment, a.rec.Workflow, ev)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recordLocked(ev)
}

func (a *attempt) recordLocked(ev asl.Event) v1.HistoryEvent {
	a.last = ev.Type
	details := ev.Details
	if c, err := compact(details); err == nil && len(details) > 0 {
		details = c
	} else {
		details = nil
	}
	sig := signature(ev.Type, ev.StateName, details)
	if prev := a.stored[sig]; len(prev) > 0 {
		a.stored[sig] = prev[1:]
		return prev[0]
	}
	a.events++
	h := v1.HistoryEvent{
		ID:        a.events,
		Timestamp: a.x.e.clock().UTC(),
		Type:      ev.Type,
		StateName: ev.StateName,
		Details:   details,
	}
	if h.ID > 1 {
		h.PreviousEventID = h.ID - 1
	}
	a.pending = append(a.pending, entry{Event: &h})
	if len(a.pending) >= maxEntriesPerChunk {
		a.appendLocked() // history only: a failure voids the attempt, nothing else
	}
	return h
}

// appendLocked writes the pending history events and the answers, if any,
// as the next journal chunk. Once it returns nil they are durable.
func (a *attempt) appendLocked(answers ...entry) error {
	if a.broken != nil {
		return a.broken
	}
	entries := append(a.pending, answers...)
	if len(entries) == 0 {
		return nil
	}
	b, err := json.Marshal(chunk{Entries: entries})
	if err == nil {
		_, err = a.x.e.st.Create(a.ctx, journalKey(a.rec.Environment, a.rec.ID, a.seq), b)
	}
	if err != nil {
		a.broken = fmt.Errorf("write the journal: %w", err)
		if a.cancel != nil {
			a.cancel(a.broken)
		}
		return a.broken
	}
	a.seq++
	a.pending = nil
	for _, en := range answers {
		a.answers[en.Key] = en
	}
	return nil
}

// Task implements asl.Runtime.
func (a *attempt) Task(ctx context.Context, key string, tc asl.TaskCall) (json.RawMessage, error) {
	a.mu.Lock()
	if ans, ok := a.answers[key]; ok {
		a.mu.Unlock()
		return ans.taskResult()
	}
	// Make the history so far durable, so that it shows while the task
	// runs (a task may take minutes).
	err := a.appendLocked()
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(tc.Resource, asl.WaitForTaskToken) {
		return a.waitForToken(ctx, key, tc)
	}

	out, err := a.x.e.call(ctx, a.rec, key, tc)
	if ctx.Err() != nil {
		// Stopped, shut down, or a sibling branch failed: nothing is
		// recorded, and a resumed execution calls again with the same key.
		return nil, ctx.Err()
	}
	return a.settle(key, out, err)
}

func (en entry) taskResult() (json.RawMessage, error) {
	if en.Error != "" {
		return nil, &asl.Error{Name: en.Error, Cause: en.Cause}
	}
	return en.Output, nil
}

// SleepUntil implements asl.Runtime. The timer is journaled; its due time
// comes from journaled answers, so a replay waits for what is left of it.
func (a *attempt) SleepUntil(ctx context.Context, key string, at time.Time) error {
	a.mu.Lock()
	_, ok := a.answers[key]
	var err error
	if !ok {
		err = a.appendLocked(entry{Answer: answerTimer, Key: key, Time: at.UTC()})
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	for {
		now := a.x.e.clock()
		if !now.Before(at) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.x.e.after(at.Sub(now)):
		}
	}
}

// answer returns the journaled answer at key, or journals fresh's.
func (a *attempt) answer(key string, fresh func() entry) entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ans, ok := a.answers[key]; ok {
		return ans
	}
	ans := fresh()
	ans.Key = key
	// A failed write voids the attempt (its context is cancelled); the
	// answer is still returned, as the interpreter cannot take an error.
	_ = a.appendLocked(ans)
	return ans
}

// Now implements asl.Runtime.
func (a *attempt) Now(key string) time.Time {
	return a.answer(key, func() entry { return entry{Answer: answerNow, Time: a.x.e.clock().UTC()} }).Time
}

// Random implements asl.Runtime.
func (a *attempt) Random(key string) float64 {
	return a.answer(key, func() entry { return entry{Answer: answerRandom, Number: rand.Float64()} }).Number
}

// UUID implements asl.Runtime.
func (a *attempt) UUID(key string) string {
	return a.answer(key, func() entry { return entry{Answer: answerUUID, Text: newUUID()} }).Text
}

// finish writes the history up to the end (the interpreter recorded how a
// run ended; the engine records an abort and a failure the interpreter
// could not name), then the final state of the record. A crash in between
// leaves it RUNNING: the resumed attempt replays to the same end and skips
// the events already written.
func (a *attempt) finish(status string, output json.RawMessage, errName, cause string) error {
	if output == nil && status == v1.ExecutionSucceeded {
		output = json.RawMessage("null")
	}
	a.mu.Lock()
	var typ string
	switch {
	case status == v1.ExecutionAborted:
		typ = EventExecutionAborted
	case status == v1.ExecutionFailed && a.last != EventExecutionFailed:
		typ = EventExecutionFailed
	}
	if typ != "" {
		b, _ := json.Marshal(map[string]string{"error": errName, "cause": cause})
		a.recordLocked(asl.Event{Type: typ, Details: b})
	}
	err := a.appendLocked()
	a.mu.Unlock()
	if err != nil {
		return err
	}
	stopDate := a.x.e.clock().UTC()
	for {
		rec, rev, err := readRecord(a.ctx, a.x.e.st, a.rec.Environment, a.rec.ID)
		if err != nil {
			return err
		}
		if rec.Status != v1.ExecutionRunning {
			return nil
		}
		rec.Status, rec.Output, rec.Error, rec.Cause, rec.StopDate = status, output, errName, cause, stopDate
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		_, err = a.x.e.st.Update(a.ctx, executionKey(rec.Environment, rec.ID), b, rev)
		if v1.IsConflict(err) {
			continue
		}
		if err == nil {
			a.x.mu.Lock()
			if a.x.counted {
				a.x.e.obs.ExecutionFinished(rec.Environment, rec.Workflow, status)
				a.x.counted = false
			}
			a.x.mu.Unlock()
			a.x.e.log.Info("execution finished", "environment", rec.Environment, "execution", rec.ID, "status", status, "error", errName)
			a.x.e.dropCallbacks(a.ctx, rec.Environment, rec.ID)
		}
		return err
	}
}

func newUUID() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
