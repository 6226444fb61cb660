package asl

import (
	"context"
	"encoding/json"
	"time"
)

// Runtime is everything nondeterministic or external the interpreter needs.
// The durable engine implements it over a journal so that re-running an
// execution from the start after a crash replays recorded results instead of
// redoing work.
//
// Keys. Every call carries a key that is unique within the execution and the
// same across replays. A state visit is named scope + State + "#" + n, where n
// counts the visits of that state within its scope, from 1 (loops through
// Choice states give #2, #3, …). Top-level states have an empty scope. Work
// that may be retried is split into attempts "/a1", "/a2", …; a Parallel branch
// or Map iteration i of an attempt opens the scope attempt + "[i]/". So the
// second attempt of state Pay inside iteration 3 of the first visit of the Map
// state Process is "Process#1/a1[3]/Pay#1/a2". The suffixes are:
//
//	Task            <state>#n/a<k>                    (TaskCall.Attempt is k)
//	Now             <state>#n/entered                 ($$.State.EnteredTime, Wait, execution timeout)
//	SleepUntil      <state>#n/wait                    (Wait state)
//	Now             <state>#n/a<k>/failed             (retry: when attempt k failed)
//	Random          <state>#n/a<k>/jitter             (retry with JitterStrategy FULL)
//	SleepUntil      <state>#n/a<k>/retry              (retry: the delay before attempt k+1)
//	UUID, Random    <base>uuid<j>, <base>random<j>    (States.UUID, States.MathRandom; j counts calls)
//
// where <base> is "<state>#n/a<k>/" for Parameters and ResultSelector of Task,
// Map and Parallel, "<state>#n/" for Pass, Fail and Choice, and
// "<state>#n/a<k>[i]/ItemSelector/" for a Map iteration's ItemSelector. The
// characters / # [ ] % in state names are percent-encoded in keys so that no
// two different positions share a key.
//
// Concurrency. Task, SleepUntil, Now, Random and UUID may be called
// concurrently by Map iterations and Parallel branches (always with distinct
// keys). Record is never called concurrently, and events are recorded in a
// deterministic order: the events of each branch or iteration are buffered and
// flushed in index order, iteration i as soon as iterations 0…i have finished.
// When an iteration fails, iterations with higher indexes are cancelled and
// their events dropped; the calls they had made (or, on replay, make) before
// being cancelled depend on timing, so a journal may hold answers a replay never
// asks for and a replay may ask for calls the first run never made. Output,
// error and events do not depend on that.
type Runtime interface {
	// Task runs a Task state's Resource with input, bounded by timeout (0:
	// none). Errors that are *asl.Error carry the States Language error name
	// (e.g. "States.TaskFailed", "States.Timeout", or a name the task
	// reported); other errors become States.TaskFailed, and
	// context.DeadlineExceeded becomes States.Timeout. If ctx itself is done,
	// Run stops and returns ctx's error, never a States Language error.
	Task(ctx context.Context, key string, t TaskCall) (json.RawMessage, error)
	// SleepUntil blocks until the runtime's clock reaches at (Wait states;
	// retry intervals). It returns at once if at has passed.
	SleepUntil(ctx context.Context, key string, at time.Time) error
	// Now, Random and UUID are recorded on first use and replayed after.
	// Random returns a number in [0, 1).
	Now(key string) time.Time
	Random(key string) float64
	UUID(key string) string
	// Record appends a history event; the interpreter emits events in a
	// deterministic order for a given journal.
	Record(e Event)
}

// WaitForTaskToken ends a Task resource that runs what it names and then
// waits for a callback with the task token ($$.Task.Token) the call was
// given: the callback's output or error is the task's result.
const WaitForTaskToken = ".waitForTaskToken"

// TaskTokens is what a Runtime that runs WaitForTaskToken tasks also
// answers: the token of the task attempt at key, the same on every replay.
type TaskTokens interface {
	TaskToken(key string) string
}

// TaskCall is one attempt of a Task state.
type TaskCall struct {
	State    string
	Resource string
	// Input is the state's effective input (after InputPath).
	Input json.RawMessage
	// Parameters is the resolved Parameters, if the state has any: this is
	// what the task receives. Nil means the task receives Input.
	Parameters json.RawMessage
	Timeout    time.Duration
	Heartbeat  time.Duration
	// Attempt counts from 1.
	Attempt int
	// IdempotencyKey is the execution id + "/" + the call's key; it is the same
	// when a journal replays the call, so handlers can de-duplicate.
	IdempotencyKey string
}

// Payload is what the task receives: Parameters if set, else Input.
func (t TaskCall) Payload() json.RawMessage {
	if t.Parameters != nil {
		return t.Parameters
	}
	return t.Input
}

// Event is one entry of an execution's history. Types are those of Step
// Functions' GetExecutionHistory (ExecutionStarted, TaskStateEntered,
// TaskScheduled, TaskSucceeded, MapIterationStarted, …); Details is a JSON
// object with lower-camel-case fields (name, input, output, error, cause,
// resource, index, …).
type Event struct {
	Type      string
	StateName string
	// Key is the state visit key (see Runtime) the event belongs to; empty
	// for execution events.
	Key     string
	Details json.RawMessage
}

// Error is a States Language error: Name is the error name Retry and Catch
// match on ("States.TaskFailed", or a name a task reported), Cause the
// human-readable detail.
type Error struct {
	Name  string
	Cause string
}

func (e *Error) Error() string {
	if e.Cause == "" {
		return e.Name
	}
	return e.Name + ": " + e.Cause
}

// The predefined error names.
const (
	ErrAll                    = "States.ALL"
	ErrHeartbeatTimeout       = "States.HeartbeatTimeout"
	ErrTimeout                = "States.Timeout"
	ErrTaskFailed             = "States.TaskFailed"
	ErrPermissions            = "States.Permissions"
	ErrResultPathMatchFailure = "States.ResultPathMatchFailure"
	ErrParameterPathFailure   = "States.ParameterPathFailure"
	ErrBranchFailed           = "States.BranchFailed"
	ErrNoChoiceMatched        = "States.NoChoiceMatched"
	ErrIntrinsicFailure       = "States.IntrinsicFailure"
	ErrExceedToleratedFailure = "States.ExceedToleratedFailureThreshold"
	ErrItemReaderFailed       = "States.ItemReaderFailed"
	ErrResultWriterFailed     = "States.ResultWriterFailed"
	ErrDataLimitExceeded      = "States.DataLimitExceeded"
	ErrRuntime                = "States.Runtime"
	ErrQueryEvaluationError   = "States.QueryEvaluationError"
)

var predefinedErrors = map[string]bool{
	ErrAll: true, ErrHeartbeatTimeout: true, ErrTimeout: true, ErrTaskFailed: true,
	ErrPermissions: true, ErrResultPathMatchFailure: true, ErrParameterPathFailure: true,
	ErrBranchFailed: true, ErrNoChoiceMatched: true, ErrIntrinsicFailure: true,
	ErrExceedToleratedFailure: true, ErrItemReaderFailed: true, ErrResultWriterFailed: true,
	ErrDataLimitExceeded: true, ErrRuntime: true, ErrQueryEvaluationError: true,
}

// ContextObject is what $$ exposes: Execution (Id, Input, Name, StartTime),
// State (Name, EnteredTime, RetryCount), StateMachine (Id, Name) and, in a
// Map state's ItemSelector, Map.Item (Index, Value).
type ContextObject struct {
	ExecutionID      string
	ExecutionName    string
	StateMachineID   string
	StateMachineName string
	StartTime        time.Time
	Input            json.RawMessage
}
