package engine

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/workflow/asl"
)

// The callback pattern. A Task whose resource ends in .waitForTaskToken
// is given a token ($$.Task.Token), calls what the rest of its resource
// names, and then waits for SendTaskSuccess or SendTaskFailure with that
// token (HeartbeatSeconds bounds the time between SendTaskHeartbeats,
// TimeoutSeconds the whole). Every step is durable:
//
//   - the token's random part is a journaled answer (key + "/token"), so a
//     replay hands out the same token;
//   - that the call went out is a journaled answer (key + "/sent", with
//     its time, from which the timeouts count), so a replay does not call
//     again but goes back to waiting;
//   - a callback is a record of its own (callbackKind), written by
//     whoever calls SendTask* with compare-and-swap, and the waiting task
//     turns it into the task's journaled answer. A timeout closes the
//     record first, with the same compare-and-swap, so a callback either
//     counts or is refused (TaskTimedOut), never accepted and then lost.

const (
	callbackKindPrefix = "WorkflowCallback/"
	answerToken        = "token"
	answerSent         = "sent"
)

func callbackKind(id string) string { return callbackKindPrefix + id }

func callbackKey(env, id, key string) store.Key {
	return store.Key{Kind: callbackKind(id), Environment: env, Name: key}
}

// callback is the record of a task waiting for its token.
type callback struct {
	// Done: a SendTaskSuccess or SendTaskFailure came; Output or Error.
	Done   bool            `json:"done,omitempty"`
	Output json.RawMessage `json:"output,omitempty"`
	Error  string          `json:"error,omitempty"`
	Cause  string          `json:"cause,omitempty"`
	// Closed: the task timed out; no callback counts any more.
	Closed bool `json:"closed,omitempty"`
	// Heartbeat is the time of the last SendTaskHeartbeat.
	Heartbeat time.Time `json:"heartbeat,omitzero"`
}

// taskToken is what a token carries: where its task is, and the random
// part that makes it unguessable from those.
type taskToken struct {
	Env   string `json:"e"`
	ID    string `json:"x"`
	Key   string `json:"k"`
	Nonce string `json:"n"`
}

func (t taskToken) String() string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseToken(s string) (taskToken, error) {
	var t taskToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.Env == "" || t.ID == "" || t.Key == "" || t.Nonce == "" {
		return taskToken{}, v1.Invalid("not a task token Berth gave")
	}
	return t, nil
}

// TaskToken implements asl.TaskTokens.
func (a *attempt) TaskToken(key string) string {
	nonce := a.answer(key+"/token", func() entry {
		var b [16]byte
		rand.Read(b[:])
		return entry{Answer: answerToken, Text: hex.EncodeToString(b[:])}
	}).Text
	return taskToken{Env: a.rec.Environment, ID: a.rec.ID, Key: key, Nonce: nonce}.String()
}

var _ asl.TaskTokens = (*attempt)(nil)

// settle journals a task's result (or error) as its answer.
func (a *attempt) settle(key string, out json.RawMessage, err error) (json.RawMessage, error) {
	ans := entry{Answer: answerTask, Key: key, Output: out}
	var aerr *asl.Error
	if errors.As(err, &aerr) {
		ans.Output, ans.Error, ans.Cause = nil, aerr.Name, aerr.Cause
	} else if err != nil {
		ans.Output, ans.Error, ans.Cause = nil, "States.TaskFailed", err.Error()
	}
	a.mu.Lock()
	err = a.appendLocked(ans)
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return ans.taskResult()
}

// waitForToken runs a .waitForTaskToken task: the call, then the wait.
func (a *attempt) waitForToken(ctx context.Context, key string, tc asl.TaskCall) (json.RawMessage, error) {
	a.TaskToken(key)
	tc.Resource = strings.TrimSuffix(tc.Resource, asl.WaitForTaskToken)
	a.mu.Lock()
	sent, ok := a.answers[key+"/sent"]
	a.mu.Unlock()
	if !ok {
		at := a.x.e.clock().UTC()
		_, err := a.x.e.call(ctx, a.rec, key, tc)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			return a.settle(key, nil, err)
		}
		sent = entry{Answer: answerSent, Key: key + "/sent", Time: at}
		a.mu.Lock()
		err = a.appendLocked(sent)
		a.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return a.awaitCallback(ctx, key, tc, sent.Time)
}

func (a *attempt) awaitCallback(ctx context.Context, key string, tc asl.TaskCall, sentAt time.Time) (json.RawMessage, error) {
	e := a.x.e
	ck := callbackKey(a.rec.Environment, a.rec.ID, key)
	for {
		rev, err := e.st.Revision(ctx)
		if err != nil {
			return nil, err
		}
		cb, cbRev, found, err := readCallback(ctx, e.st, ck)
		if err != nil {
			return nil, err
		}
		if cb.Done {
			if cb.Error != "" || cb.Output == nil {
				return a.settle(key, nil, &asl.Error{Name: cb.Error, Cause: cb.Cause})
			}
			return a.settle(key, cb.Output, nil)
		}
		var due time.Time
		var late *asl.Error
		if tc.Timeout > 0 {
			due = sentAt.Add(tc.Timeout)
			late = &asl.Error{Name: asl.ErrTimeout, Cause: fmt.Sprintf("no callback with the task token came within %s", tc.Timeout)}
		}
		if tc.Heartbeat > 0 {
			last := sentAt
			if cb.Heartbeat.After(last) {
				last = cb.Heartbeat
			}
			if hb := last.Add(tc.Heartbeat); due.IsZero() || hb.Before(due) {
				due = hb
				late = &asl.Error{Name: asl.ErrHeartbeatTimeout, Cause: fmt.Sprintf("no heartbeat came within %s", tc.Heartbeat)}
			}
		}
		now := e.clock()
		if !due.IsZero() && !now.Before(due) {
			cb.Closed = true
			if err := writeCallback(ctx, e.st, ck, cb, cbRev, found); v1.IsConflict(err) {
				continue // a callback came just now: it counts
			} else if err != nil {
				return nil, err
			}
			return a.settle(key, nil, late)
		}
		var timer <-chan time.Time
		if !due.IsZero() {
			timer = e.after(due.Sub(now))
		}
		if err := waitKind(ctx, e.st, ck, rev, timer); err != nil {
			return nil, err
		}
	}
}

// waitKind returns when the record at key may have changed after rev, or
// timer fires.
func waitKind(ctx context.Context, st store.Store, key store.Key, rev uint64, timer <-chan time.Time) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := st.Watch(wctx, key.Kind, rev)
	if err != nil {
		if v1.IsConflict(err) {
			return nil
		}
		return err
	}
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			if ev.Record.Key == key {
				return nil
			}
		case <-timer:
			return nil
		}
	}
}

func readCallback(ctx context.Context, st store.Store, key store.Key) (callback, uint64, bool, error) {
	rec, err := st.Get(ctx, key)
	if v1.IsNotFound(err) {
		return callback{}, 0, false, nil
	}
	if err != nil {
		return callback{}, 0, false, err
	}
	var cb callback
	if err := json.Unmarshal(rec.Value, &cb); err != nil {
		return callback{}, 0, false, fmt.Errorf("callback %s: %w", key, err)
	}
	return cb, rec.Revision, true, nil
}

// writeCallback writes cb over the revision read (Create when there was
// none); Conflict when it changed since.
func writeCallback(ctx context.Context, st store.Store, key store.Key, cb callback, rev uint64, found bool) error {
	b, err := json.Marshal(cb)
	if err != nil {
		return err
	}
	if found {
		_, err = st.Update(ctx, key, b, rev)
	} else {
		_, err = st.Create(ctx, key, b)
	}
	return err
}

// TokenEnvironment is the environment of the execution a task token
// belongs to.
func (e *Engine) TokenEnvironment(token string) (string, error) {
	t, err := parseToken(token)
	return t.Env, err
}

// SendTaskSuccess ends the task waiting for token with output (JSON).
func (e *Engine) SendTaskSuccess(ctx context.Context, token string, output json.RawMessage) error {
	if !json.Valid(output) {
		return v1.FieldError("output", "the output must be JSON")
	}
	out, err := compact(output)
	if err != nil {
		return v1.FieldError("output", "the output must be JSON")
	}
	return e.sendTask(ctx, token, func(cb *callback) { cb.Done, cb.Output = true, out })
}

// SendTaskFailure ends the task waiting for token with a States Language
// error that Retry and Catch see.
func (e *Engine) SendTaskFailure(ctx context.Context, token, errName, cause string) error {
	return e.sendTask(ctx, token, func(cb *callback) { cb.Done, cb.Error, cb.Cause = true, errName, cause })
}

// SendTaskHeartbeat tells the task waiting for token that its worker is
// alive: its HeartbeatSeconds count again from now.
func (e *Engine) SendTaskHeartbeat(ctx context.Context, token string) error {
	return e.sendTask(ctx, token, func(cb *callback) { cb.Heartbeat = e.clock().UTC() })
}

// sendTask checks that token's task is waiting and applies change to its
// callback record. NotFound: no such task; Conflict: it is over.
func (e *Engine) sendTask(ctx context.Context, token string, change func(*callback)) error {
	t, err := parseToken(token)
	if err != nil {
		return err
	}
	rec, _, err := readRecord(ctx, e.st, t.Env, t.ID)
	if v1.IsNotFound(err) {
		return v1.NotFound("the execution of this task token no longer exists")
	}
	if err != nil {
		return err
	}
	if rec.Status != v1.ExecutionRunning {
		return v1.Conflict("the execution of this task has ended: %s", rec.Status)
	}
	entries, _, err := readJournal(ctx, e.st, t.Env, t.ID)
	if err != nil {
		return err
	}
	issued := false
	for _, en := range entries {
		switch {
		case en.Key == t.Key+"/token" && en.Text == t.Nonce:
			issued = true
		case en.Key == t.Key && en.Answer == answerTask:
			return v1.Conflict("the task has already ended")
		}
	}
	if !issued {
		return v1.NotFound("no task was given this token")
	}
	ck := callbackKey(t.Env, t.ID, t.Key)
	for {
		cb, rev, found, err := readCallback(ctx, e.st, ck)
		if err != nil {
			return err
		}
		if cb.Done || cb.Closed {
			return v1.Conflict("the task has already ended")
		}
		change(&cb)
		err = writeCallback(ctx, e.st, ck, cb, rev, found)
		if v1.IsConflict(err) {
			continue
		}
		return err
	}
}

// dropCallbacks deletes the callback records of a finished execution
// (best effort: what is left is never read again).
func (e *Engine) dropCallbacks(ctx context.Context, env, id string) {
	recs, _, err := e.st.List(ctx, callbackKind(id), env)
	if err != nil {
		return
	}
	for _, r := range recs {
		e.st.Delete(ctx, r.Key, r.Revision)
	}
}
