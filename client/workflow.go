package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	v1 "berth.dev/berth/api/v1"
)

func executionsPath(env string) (string, error) {
	if env == "" {
		return "", v1.FieldError("metadata.environment", "must not be empty")
	}
	return "/api/v1/environments/" + url.PathEscape(env) + "/executions", nil
}

func executionPath(env, id string) (string, error) {
	p, err := executionsPath(env)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", v1.Invalid("the execution id must not be empty")
	}
	return p + "/" + url.PathEscape(id), nil
}

// StartExecution starts an execution of a workflow with input (JSON;
// empty means {}) and returns it, RUNNING.
func (c *Client) StartExecution(ctx context.Context, env, workflow string, input []byte) (v1.Execution, error) {
	path, err := objectPath(v1.KindWorkflow, env, workflow)
	if err != nil {
		return v1.Execution{}, err
	}
	var exec v1.Execution
	err = c.do(ctx, http.MethodPost, path+"/executions", nil, "application/json", bytes.NewReader(input), &exec)
	return exec, err
}

// Execution returns an execution as it stands.
func (c *Client) Execution(ctx context.Context, env, id string) (v1.Execution, error) {
	return c.WaitExecution(ctx, env, id, 0)
}

// WaitExecution returns the execution once it has finished or after wait
// (the server bounds it to a few minutes), whichever comes first; it
// answers at once when wait is 0.
func (c *Client) WaitExecution(ctx context.Context, env, id string, wait time.Duration) (v1.Execution, error) {
	path, err := executionPath(env, id)
	if err != nil {
		return v1.Execution{}, err
	}
	var q url.Values
	if wait > 0 {
		q = url.Values{"wait": {wait.String()}}
	}
	var exec v1.Execution
	err = c.do(ctx, http.MethodGet, path, q, "", nil, &exec)
	return exec, err
}

// Executions lists env's executions, of one workflow unless workflow is
// "", newest first.
func (c *Client) Executions(ctx context.Context, env, workflow string) ([]v1.Execution, error) {
	path, err := executionsPath(env)
	if err != nil {
		return nil, err
	}
	var q url.Values
	if workflow != "" {
		q = url.Values{"workflow": {workflow}}
	}
	var l struct {
		Items []v1.Execution `json:"items"`
	}
	err = c.do(ctx, http.MethodGet, path, q, "", nil, &l)
	return l.Items, err
}

// ExecutionHistory returns an execution's history events, oldest first.
func (c *Client) ExecutionHistory(ctx context.Context, env, id string) ([]v1.HistoryEvent, error) {
	path, err := executionPath(env, id)
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []v1.HistoryEvent `json:"items"`
	}
	err = c.do(ctx, http.MethodGet, path+"/history", nil, "", nil, &l)
	return l.Items, err
}

// StopExecution aborts a running execution with an error name and cause
// (both optional) and returns it, ABORTED.
func (c *Client) StopExecution(ctx context.Context, env, id, errName, cause string) (v1.Execution, error) {
	path, err := executionPath(env, id)
	if err != nil {
		return v1.Execution{}, err
	}
	body, err := json.Marshal(struct {
		Error string `json:"error,omitempty"`
		Cause string `json:"cause,omitempty"`
	}{errName, cause})
	if err != nil {
		return v1.Execution{}, err
	}
	var exec v1.Execution
	err = c.do(ctx, http.MethodPost, path+"/stop", nil, "application/json", bytes.NewReader(body), &exec)
	return exec, err
}
