package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// Store layout. An execution is one record of kind KindExecution keyed by
// environment and id. Its journal is a kind of its own, one per execution
// (journalKind), keyed by environment and a zero-padded sequence number,
// so that store.List of that kind and environment reads it in order and
// an append is a Create that a crash either made durable or did not.
const (
	KindExecution      = "WorkflowExecution"
	journalKindPrefix  = "WorkflowJournal/"
	journalSeqDigits   = 10
	maxEntriesPerChunk = 512
)

func journalKind(id string) string { return journalKindPrefix + id }

func journalKey(env, id string, seq int) store.Key {
	return store.Key{Kind: journalKind(id), Environment: env, Name: fmt.Sprintf("%0*d", journalSeqDigits, seq)}
}

func executionKey(env, id string) store.Key {
	return store.Key{Kind: KindExecution, Environment: env, Name: id}
}

// record is what the store holds for an execution: what the API shows, and
// the definition it runs, so that it resumes as it started even when the
// workflow has changed or gone since.
type record struct {
	v1.Execution
	Definition json.RawMessage `json:"definition"`
}

// Answer kinds.
const (
	answerTask   = "task"
	answerTimer  = "timer"
	answerNow    = "now"
	answerRandom = "random"
	answerUUID   = "uuid"
)

// entry is one line of the journal: a history event, or an answer.
type entry struct {
	Event *v1.HistoryEvent `json:"event,omitempty"`

	Answer string `json:"answer,omitempty"`
	Key    string `json:"key,omitempty"`
	// A task's result: its output, or the States Language error.
	Output json.RawMessage `json:"output,omitempty"`
	Error  string          `json:"error,omitempty"`
	Cause  string          `json:"cause,omitempty"`
	// A timer's due time, or a clock reading.
	Time   time.Time `json:"time,omitzero"`
	Number float64   `json:"number,omitempty"`
	Text   string    `json:"text,omitempty"`
}

// chunk is one journal record: the entries written by one append.
type chunk struct {
	Entries []entry `json:"entries"`
}

func readJournal(ctx context.Context, st store.Store, env, id string) ([]entry, int, error) {
	recs, _, err := st.List(ctx, journalKind(id), env)
	if err != nil {
		return nil, 0, err
	}
	var out []entry
	for _, rec := range recs {
		var c chunk
		if err := json.Unmarshal(rec.Value, &c); err != nil {
			return nil, 0, fmt.Errorf("journal of execution %s/%s, %s: %w", env, id, rec.Key.Name, err)
		}
		out = append(out, c.Entries...)
	}
	return out, len(recs), nil
}

func readRecord(ctx context.Context, st store.Store, env, id string) (record, uint64, error) {
	rec, err := st.Get(ctx, executionKey(env, id))
	if v1.IsNotFound(err) {
		return record{}, 0, v1.NotFound("execution %q not found in environment %q", id, env)
	}
	if err != nil {
		return record{}, 0, err
	}
	var r record
	if err := json.Unmarshal(rec.Value, &r); err != nil {
		return record{}, 0, fmt.Errorf("execution %s/%s: %w", env, id, err)
	}
	return r, rec.Revision, nil
}
