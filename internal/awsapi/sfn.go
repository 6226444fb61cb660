package awsapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// Executions runs workflow executions (the workflow engine).
type Executions interface {
	// StartNamed begins an execution; name "" lets the engine pick the
	// id. A name already used in env is a Conflict, unless it is an
	// execution of the same workflow with the same input, which is
	// returned as it is.
	StartNamed(ctx context.Context, env, workflow, name string, input json.RawMessage) (v1.Execution, error)
	Get(ctx context.Context, env, id string) (v1.Execution, error)
	List(ctx context.Context, env, workflow string) ([]v1.Execution, error)
	History(ctx context.Context, env, id string) ([]v1.HistoryEvent, error)
	Stop(ctx context.Context, env, id, errName, cause string) error
	Wait(ctx context.Context, env, id string) (v1.Execution, error)
}

// TaskTokens answers the callbacks of tasks that wait for a task token
// (the workflow engine). Its errors are NotFound for a task never
// started, Conflict for one that is over (answered, timed out, its
// execution ended), Invalid for output that is not JSON.
type TaskTokens interface {
	// TokenEnvironment is the environment of the execution a token
	// belongs to; an error when it is no token the engine gave.
	TokenEnvironment(token string) (string, error)
	SendTaskSuccess(ctx context.Context, token string, output json.RawMessage) error
	SendTaskFailure(ctx context.Context, token, errName, cause string) error
	SendTaskHeartbeat(ctx context.Context, token string) error
}

// MaxSyncWait bounds StartSyncExecution, as Step Functions bounds
// synchronous express executions: five minutes.
const MaxSyncWait = 5 * time.Minute

// StepFunctionsTargetPrefix starts the X-Amz-Target of every Step
// Functions operation.
const StepFunctionsTargetPrefix = "AWSStepFunctions."

// StepFunctions serves the Step Functions API (AWS JSON 1.0: POST /,
// the operation in X-Amz-Target).
func (a *API) StepFunctions() http.Handler {
	return http.HandlerFunc(a.serveSFN)
}

type sfnOp func(ctx context.Context, c *caller) (any, error)

func (a *API) sfnOps() map[string]sfnOp {
	return map[string]sfnOp{
		"StartExecution":       a.startExecution,
		"StartSyncExecution":   a.startSyncExecution,
		"DescribeExecution":    a.describeExecution,
		"StopExecution":        a.stopExecution,
		"ListExecutions":       a.listExecutions,
		"GetExecutionHistory":  a.getExecutionHistory,
		"ListStateMachines":    a.listStateMachines,
		"DescribeStateMachine": a.describeStateMachine,
		"SendTaskSuccess":      a.sendTaskSuccess,
		"SendTaskFailure":      a.sendTaskFailure,
		"SendTaskHeartbeat":    a.sendTaskHeartbeat,
	}
}

func (a *API) serveSFN(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", requestID())
	opName, _ := trimPrefixFold(r.Header.Get("X-Amz-Target"), StepFunctionsTargetPrefix)
	var out any
	err := func() error {
		if r.Method != http.MethodPost {
			return errf(http.StatusBadRequest, "UnknownOperationException", "the Step Functions API takes POST, not %s", r.Method)
		}
		c, err := a.authenticate(r, a.states, a.cfg.MaxPayloadBytes+64<<10)
		if err != nil {
			return err
		}
		op := a.sfnOps()[opName]
		if op == nil {
			return errf(http.StatusBadRequest, "UnknownOperationException", "unknown operation %q", r.Header.Get("X-Amz-Target"))
		}
		out, err = op(r.Context(), c)
		return err
	}()
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = a.internalError(opName, err)
		}
		w.Header().Set("X-Amzn-ErrorType", ae.Code)
		w.WriteHeader(ae.Status)
		json.NewEncoder(w).Encode(map[string]string{"__type": ae.Code, "message": ae.Message})
		return
	}
	json.NewEncoder(w).Encode(out)
}

// decode reads the request's JSON into v; unknown fields are allowed, as
// newer SDKs send fields older services ignore.
func decode(c *caller, v any) error {
	if len(strings.TrimSpace(string(c.body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return errf(http.StatusBadRequest, "SerializationException", "the request body is not the JSON the operation takes: %v", err)
	}
	return nil
}

// --- ARNs ---

// An ARN's account field is the environment:
// arn:aws:states:REGION:ENV:stateMachine:WORKFLOW and
// arn:aws:states:REGION:ENV:execution:WORKFLOW:ID. The region is the one
// the request was signed for; any is accepted.

func stateMachineARN(region, env, wf string) string {
	return "arn:aws:states:" + region + ":" + env + ":stateMachine:" + wf
}

func executionARN(region, env, wf, id string) string {
	return "arn:aws:states:" + region + ":" + env + ":execution:" + wf + ":" + id
}

func parseStateMachineARN(arn string) (env, wf string, err error) {
	p := strings.Split(arn, ":")
	if len(p) != 7 || p[0] != "arn" || p[2] != "states" || p[5] != "stateMachine" || p[4] == "" || p[6] == "" {
		return "", "", errf(http.StatusBadRequest, "InvalidArn", "Invalid Arn: '%s': a state machine is arn:aws:states:REGION:ENVIRONMENT:stateMachine:NAME", arn)
	}
	return p[4], p[6], nil
}

func parseExecutionARN(arn string) (env, wf, id string, err error) {
	p := strings.Split(arn, ":")
	if len(p) != 8 || p[0] != "arn" || p[2] != "states" || p[5] != "execution" || p[4] == "" || p[6] == "" || p[7] == "" {
		return "", "", "", errf(http.StatusBadRequest, "InvalidArn", "Invalid Arn: '%s': an execution is arn:aws:states:REGION:ENVIRONMENT:execution:STATEMACHINE:ID", arn)
	}
	return p[4], p[6], p[7], nil
}

// --- state machines ---

func (a *API) workflow(ctx context.Context, c *caller, arn string) (*v1.Workflow, error) {
	env, name, err := parseStateMachineARN(arn)
	if err != nil {
		return nil, err
	}
	if err := c.who.CanAccess(env, false); err != nil {
		return nil, accessError(err)
	}
	var wf v1.Workflow
	err = store.Get(ctx, a.cfg.Store, store.Key{Kind: v1.KindWorkflow, Environment: env, Name: name}, &wf)
	if v1.IsNotFound(err) {
		return nil, errf(http.StatusBadRequest, "StateMachineDoesNotExist", "State Machine Does Not Exist: '%s'", arn)
	}
	if err != nil {
		return nil, err
	}
	return &wf, nil
}

type stateMachineItem struct {
	StateMachineArn string `json:"stateMachineArn"`
	Name            string `json:"name"`
	Type            string `json:"type"`
	CreationDate    *epoch `json:"creationDate,omitempty"`
}

func (a *API) listStateMachines(ctx context.Context, c *caller) (any, error) {
	var in struct {
		MaxResults int    `json:"maxResults"`
		NextToken  string `json:"nextToken"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	envs, err := a.environments(ctx, c.who)
	if err != nil {
		return nil, err
	}
	items := []stateMachineItem{}
	for _, env := range envs {
		wfs, _, err := store.List[v1.Workflow](ctx, a.cfg.Store, v1.KindWorkflow, env)
		if err != nil {
			return nil, err
		}
		for _, wf := range wfs {
			items = append(items, stateMachineItem{
				StateMachineArn: stateMachineARN(c.region, env, wf.Metadata.Name), Name: wf.Metadata.Name,
				Type: "STANDARD", CreationDate: epochPtr(wf.Metadata.CreationTimestamp),
			})
		}
	}
	items, next, err := page(items, in.NextToken, in.MaxResults, 1000)
	if err != nil {
		return nil, err
	}
	return map[string]any{"stateMachines": items, "nextToken": omitEmpty(next)}, nil
}

func omitEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (a *API) describeStateMachine(ctx context.Context, c *caller) (any, error) {
	var in struct {
		StateMachineArn string `json:"stateMachineArn"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	wf, err := a.workflow(ctx, c, in.StateMachineArn)
	if err != nil {
		return nil, err
	}
	env := wf.Metadata.Environment
	return map[string]any{
		"stateMachineArn": stateMachineARN(c.region, env, wf.Metadata.Name),
		"name":            wf.Metadata.Name,
		"status":          "ACTIVE",
		"definition":      string(wf.Spec.Definition),
		"roleArn":         "arn:aws:iam::" + env + ":role/berth",
		"type":            "STANDARD",
		"creationDate":    epochPtr(wf.Metadata.CreationTimestamp),
		"revisionId":      wf.Metadata.UID + "/" + itoa(wf.Metadata.Generation),
	}, nil
}

// --- executions ---

type startInput struct {
	StateMachineArn string  `json:"stateMachineArn"`
	Name            string  `json:"name"`
	Input           *string `json:"input"`
	TraceHeader     string  `json:"traceHeader"`
}

func (a *API) start(ctx context.Context, c *caller) (v1.Execution, error) {
	var in startInput
	if err := decode(c, &in); err != nil {
		return v1.Execution{}, err
	}
	env, wfName, err := parseStateMachineARN(in.StateMachineArn)
	if err != nil {
		return v1.Execution{}, err
	}
	if err := c.who.CanAccess(env, true); err != nil {
		return v1.Execution{}, accessError(err)
	}
	if in.Name != "" && !isName(in.Name) {
		return v1.Execution{}, errf(http.StatusBadRequest, "InvalidName", "Invalid Name: '%s': up to 80 letters, digits, '-' and '_'", in.Name)
	}
	var input json.RawMessage
	if in.Input != nil {
		input = json.RawMessage(*in.Input)
		if !json.Valid(input) {
			return v1.Execution{}, errf(http.StatusBadRequest, "InvalidExecutionInput", "Invalid State Machine Execution Input: the input is not JSON")
		}
	}
	if int64(len(input)) > a.cfg.MaxPayloadBytes {
		return v1.Execution{}, errf(http.StatusBadRequest, "InvalidExecutionInput", "the input is over the limit of %d bytes; pass larger data by reference", a.cfg.MaxPayloadBytes)
	}
	exec, err := a.cfg.Executions.StartNamed(ctx, env, wfName, in.Name, input)
	switch {
	case err == nil:
		return exec, nil
	case v1.IsNotFound(err):
		return v1.Execution{}, errf(http.StatusBadRequest, "StateMachineDoesNotExist", "State Machine Does Not Exist: '%s'", in.StateMachineArn)
	case v1.IsConflict(err):
		return v1.Execution{}, errf(http.StatusBadRequest, "ExecutionAlreadyExists", "Execution Already Exists: '%s'", executionARN(c.region, env, wfName, in.Name))
	case v1.IsInvalid(err):
		return v1.Execution{}, errf(http.StatusBadRequest, "InvalidDefinition", "%v", err)
	}
	return v1.Execution{}, err
}

func (a *API) startExecution(ctx context.Context, c *caller) (any, error) {
	exec, err := a.start(ctx, c)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"executionArn": executionARN(c.region, exec.Environment, exec.Workflow, exec.ID),
		"startDate":    epochPtr(exec.StartDate),
	}, nil
}

// startSyncExecution runs an execution to its end, up to MaxSyncWait; one
// still running then is stopped and answered TIMED_OUT, as an express
// execution past its limit is.
func (a *API) startSyncExecution(ctx context.Context, c *caller) (any, error) {
	exec, err := a.start(ctx, c)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, MaxSyncWait)
	defer cancel()
	done, err := a.cfg.Executions.Wait(wctx, exec.Environment, exec.ID)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		const cause = "the execution ran past the five minutes a synchronous execution may take"
		if serr := a.cfg.Executions.Stop(ctx, exec.Environment, exec.ID, "States.Timeout", cause); serr != nil && !v1.IsConflict(serr) {
			return nil, serr
		}
		if done, err = a.cfg.Executions.Get(ctx, exec.Environment, exec.ID); err != nil {
			return nil, err
		}
		if done.Status == v1.ExecutionAborted {
			done.Status = v1.ExecutionTimedOut
		}
	}
	out := describe(c.region, done)
	delete(out, "redriveCount")
	delete(out, "redriveStatus")
	return out, nil
}

func describe(region string, e v1.Execution) map[string]any {
	out := map[string]any{
		"executionArn":    executionARN(region, e.Environment, e.Workflow, e.ID),
		"stateMachineArn": stateMachineARN(region, e.Environment, e.Workflow),
		"name":            e.ID,
		"status":          e.Status,
		"startDate":       epochPtr(e.StartDate),
		"input":           jsonString(e.Input),
		"inputDetails":    map[string]bool{"included": true},
		"redriveCount":    0,
		"redriveStatus":   "NOT_REDRIVABLE",
	}
	if !e.StopDate.IsZero() {
		out["stopDate"] = epochPtr(e.StopDate)
	}
	if e.Status == v1.ExecutionSucceeded {
		out["output"] = jsonString(e.Output)
		out["outputDetails"] = map[string]bool{"included": true}
	}
	if e.Error != "" {
		out["error"] = e.Error
	}
	if e.Cause != "" {
		out["cause"] = e.Cause
	}
	return out
}

// execution reads the execution an ARN names, checking who may see it.
func (a *API) execution(ctx context.Context, c *caller, arn string, write bool) (v1.Execution, error) {
	env, wf, id, err := parseExecutionARN(arn)
	if err != nil {
		return v1.Execution{}, err
	}
	if err := c.who.CanAccess(env, write); err != nil {
		return v1.Execution{}, accessError(err)
	}
	exec, err := a.cfg.Executions.Get(ctx, env, id)
	if v1.IsNotFound(err) || (err == nil && exec.Workflow != wf) {
		return v1.Execution{}, errf(http.StatusBadRequest, "ExecutionDoesNotExist", "Execution Does Not Exist: '%s'", arn)
	}
	return exec, err
}

func (a *API) describeExecution(ctx context.Context, c *caller) (any, error) {
	var in struct {
		ExecutionArn string `json:"executionArn"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	exec, err := a.execution(ctx, c, in.ExecutionArn, false)
	if err != nil {
		return nil, err
	}
	return describe(c.region, exec), nil
}

func (a *API) stopExecution(ctx context.Context, c *caller) (any, error) {
	var in struct {
		ExecutionArn string `json:"executionArn"`
		Error        string `json:"error"`
		Cause        string `json:"cause"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	exec, err := a.execution(ctx, c, in.ExecutionArn, true)
	if err != nil {
		return nil, err
	}
	if exec.Status == v1.ExecutionRunning {
		err := a.cfg.Executions.Stop(ctx, exec.Environment, exec.ID, in.Error, in.Cause)
		if err != nil && !v1.IsConflict(err) {
			return nil, err
		}
		if exec, err = a.cfg.Executions.Get(ctx, exec.Environment, exec.ID); err != nil {
			return nil, err
		}
	}
	// Stopping a finished execution changes nothing and is no error.
	return map[string]any{"stopDate": epochPtr(exec.StopDate)}, nil
}

func (a *API) listExecutions(ctx context.Context, c *caller) (any, error) {
	var in struct {
		StateMachineArn string `json:"stateMachineArn"`
		StatusFilter    string `json:"statusFilter"`
		MaxResults      int    `json:"maxResults"`
		NextToken       string `json:"nextToken"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	if in.StateMachineArn == "" {
		return nil, errf(http.StatusBadRequest, "ValidationException", "stateMachineArn is required (Berth has no map runs)")
	}
	wf, err := a.workflow(ctx, c, in.StateMachineArn)
	if err != nil {
		return nil, err
	}
	execs, err := a.cfg.Executions.List(ctx, wf.Metadata.Environment, wf.Metadata.Name)
	if err != nil {
		return nil, err
	}
	items := []map[string]any{}
	for _, e := range execs {
		if in.StatusFilter != "" && e.Status != in.StatusFilter {
			continue
		}
		item := map[string]any{
			"executionArn":    executionARN(c.region, e.Environment, e.Workflow, e.ID),
			"stateMachineArn": stateMachineARN(c.region, e.Environment, e.Workflow),
			"name":            e.ID,
			"status":          e.Status,
			"startDate":       epochPtr(e.StartDate),
		}
		if !e.StopDate.IsZero() {
			item["stopDate"] = epochPtr(e.StopDate)
		}
		items = append(items, item)
	}
	items, next, err := page(items, in.NextToken, in.MaxResults, 1000)
	if err != nil {
		return nil, err
	}
	return map[string]any{"executions": items, "nextToken": omitEmpty(next)}, nil
}

func (a *API) getExecutionHistory(ctx context.Context, c *caller) (any, error) {
	var in struct {
		ExecutionArn         string `json:"executionArn"`
		MaxResults           int    `json:"maxResults"`
		ReverseOrder         bool   `json:"reverseOrder"`
		NextToken            string `json:"nextToken"`
		IncludeExecutionData *bool  `json:"includeExecutionData"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	exec, err := a.execution(ctx, c, in.ExecutionArn, false)
	if err != nil {
		return nil, err
	}
	events, err := a.cfg.Executions.History(ctx, exec.Environment, exec.ID)
	if err != nil {
		return nil, err
	}
	withData := in.IncludeExecutionData == nil || *in.IncludeExecutionData
	items := make([]map[string]any, len(events))
	for i, ev := range events {
		items[i] = historyEvent(c.region, ev, withData)
	}
	if in.ReverseOrder {
		for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
			items[i], items[j] = items[j], items[i]
		}
	}
	items, next, err := page(items, in.NextToken, in.MaxResults, 1000)
	if err != nil {
		return nil, err
	}
	return map[string]any{"events": items, "nextToken": omitEmpty(next)}, nil
}

// detailsField is the member of a Step Functions HistoryEvent that carries
// the details of an event type, and the fields it has.
var detailsField = map[string]struct {
	member string
	fields []string
}{
	"ExecutionStarted":      {"executionStartedEventDetails", []string{"input"}},
	"ExecutionSucceeded":    {"executionSucceededEventDetails", []string{"output"}},
	"ExecutionFailed":       {"executionFailedEventDetails", []string{"error", "cause"}},
	"ExecutionAborted":      {"executionAbortedEventDetails", []string{"error", "cause"}},
	"ExecutionTimedOut":     {"executionTimedOutEventDetails", []string{"error", "cause"}},
	"TaskScheduled":         {"taskScheduledEventDetails", []string{"resource", "parameters", "timeoutInSeconds", "heartbeatInSeconds"}},
	"TaskSucceeded":         {"taskSucceededEventDetails", []string{"resource", "output"}},
	"TaskFailed":            {"taskFailedEventDetails", []string{"resource", "error", "cause"}},
	"TaskTimedOut":          {"taskTimedOutEventDetails", []string{"resource", "error", "cause"}},
	"TaskSubmitted":         {"taskSubmittedEventDetails", []string{"resource", "output"}},
	"MapStateStarted":       {"mapStateStartedEventDetails", []string{"length"}},
	"MapIterationStarted":   {"mapIterationStartedEventDetails", []string{"name", "index"}},
	"MapIterationSucceeded": {"mapIterationSucceededEventDetails", []string{"name", "index"}},
	"MapIterationFailed":    {"mapIterationFailedEventDetails", []string{"name", "index"}},
	"MapIterationAborted":   {"mapIterationAbortedEventDetails", []string{"name", "index"}},
}

// jsonFields are carried as JSON text in a string.
var jsonFields = map[string]bool{"input": true, "output": true, "parameters": true}

// historyEvent turns a Berth history event into Step Functions' shape:
// the details under the member of its type, JSON data as strings, and a
// Task resource split into resourceType and resource ("function:pay" is
// resourceType function, resource pay).
func historyEvent(region string, ev v1.HistoryEvent, withData bool) map[string]any {
	out := map[string]any{
		"id":        ev.ID,
		"timestamp": epochPtr(ev.Timestamp),
		"type":      ev.Type,
	}
	if ev.PreviousEventID != 0 {
		out["previousEventId"] = ev.PreviousEventID
	}
	var fields map[string]json.RawMessage
	json.Unmarshal(ev.Details, &fields)
	member, fieldNames := "", []string(nil)
	if d, ok := detailsField[ev.Type]; ok {
		member, fieldNames = d.member, d.fields
	} else if strings.HasSuffix(ev.Type, "StateEntered") {
		member, fieldNames = "stateEnteredEventDetails", []string{"name", "input"}
	} else if strings.HasSuffix(ev.Type, "StateExited") {
		member, fieldNames = "stateExitedEventDetails", []string{"name", "output"}
	}
	if member == "" {
		return out
	}
	d := map[string]any{}
	for _, f := range fieldNames {
		raw, ok := fields[f]
		if !ok {
			continue
		}
		switch {
		case jsonFields[f]:
			if withData {
				d[f] = string(raw)
			}
			d[f+"Details"] = map[string]bool{"truncated": false}
		case f == "resource":
			var res string
			json.Unmarshal(raw, &res)
			typ, name, ok := strings.Cut(res, ":")
			if !ok || strings.HasPrefix(res, "http") {
				typ, name = "http", res
			}
			d["resourceType"], d["resource"] = typ, name
			if ev.Type == "TaskScheduled" {
				d["region"] = region
			}
		case f == "timeoutInSeconds", f == "heartbeatInSeconds":
			var n float64
			json.Unmarshal(raw, &n)
			d[f] = int64(n)
		default:
			d[f] = raw
		}
	}
	if ev.StateName != "" {
		if _, ok := d["name"]; !ok && slicesContains(fieldNames, "name") {
			d["name"] = ev.StateName
		}
	}
	if strings.HasPrefix(ev.Type, "MapIteration") {
		if _, ok := d["name"]; !ok {
			d["name"] = ev.StateName
		}
	}
	out[member] = d
	return out
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// --- task tokens ---

func (a *API) tokens() (TaskTokens, error) {
	t, ok := a.cfg.Executions.(TaskTokens)
	if !ok {
		return nil, errf(http.StatusBadRequest, "UnknownOperationException", "this server does not run tasks that wait for a task token")
	}
	return t, nil
}

// tokenCaller checks the token and that c may write in its environment.
func (a *API) tokenCaller(c *caller, token string) (TaskTokens, error) {
	t, err := a.tokens()
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, errf(http.StatusBadRequest, "InvalidToken", "Invalid Token: the taskToken is required")
	}
	env, err := t.TokenEnvironment(token)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "InvalidToken", "Invalid Token: '%s'", token)
	}
	if err := c.who.CanAccess(env, true); err != nil {
		return nil, accessError(err)
	}
	return t, nil
}

// taskError maps the engine's answer to a callback.
func taskError(err error) error {
	switch {
	case err == nil:
		return nil
	case v1.IsNotFound(err):
		return errf(http.StatusBadRequest, "TaskDoesNotExist", "Task Does Not Exist: %v", err)
	case v1.IsConflict(err):
		return errf(http.StatusBadRequest, "TaskTimedOut", "Task Timed Out: %v", err)
	case v1.IsInvalid(err):
		return errf(http.StatusBadRequest, "InvalidOutput", "Invalid Output: %v", err)
	}
	return err
}

func (a *API) sendTaskSuccess(ctx context.Context, c *caller) (any, error) {
	var in struct {
		TaskToken string `json:"taskToken"`
		Output    string `json:"output"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	t, err := a.tokenCaller(c, in.TaskToken)
	if err != nil {
		return nil, err
	}
	if !json.Valid([]byte(in.Output)) {
		return nil, errf(http.StatusBadRequest, "InvalidOutput", "Invalid Output: the output is not JSON")
	}
	if int64(len(in.Output)) > a.cfg.MaxPayloadBytes {
		return nil, errf(http.StatusBadRequest, "InvalidOutput", "Invalid Output: over the limit of %d bytes", a.cfg.MaxPayloadBytes)
	}
	return struct{}{}, taskError(t.SendTaskSuccess(ctx, in.TaskToken, json.RawMessage(in.Output)))
}

func (a *API) sendTaskFailure(ctx context.Context, c *caller) (any, error) {
	var in struct {
		TaskToken string `json:"taskToken"`
		Error     string `json:"error"`
		Cause     string `json:"cause"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	t, err := a.tokenCaller(c, in.TaskToken)
	if err != nil {
		return nil, err
	}
	if len(in.Error) > 256 || strings.IndexFunc(in.Error, unicode.IsControl) >= 0 {
		return nil, errf(http.StatusBadRequest, "ValidationException", "error must be at most 256 characters, no control characters")
	}
	return struct{}{}, taskError(t.SendTaskFailure(ctx, in.TaskToken, in.Error, in.Cause))
}

func (a *API) sendTaskHeartbeat(ctx context.Context, c *caller) (any, error) {
	var in struct {
		TaskToken string `json:"taskToken"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	t, err := a.tokenCaller(c, in.TaskToken)
	if err != nil {
		return nil, err
	}
	return struct{}{}, taskError(t.SendTaskHeartbeat(ctx, in.TaskToken))
}
