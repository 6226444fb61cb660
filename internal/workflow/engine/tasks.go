package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"berth.dev/berth/internal/workflow/asl"
)

// MaxResultBytes bounds a task's result, as the API bounds invocation
// payloads: larger data goes by reference.
const MaxResultBytes = 1 << 20

// call runs one task: it POSTs the state's input as JSON to what the
// resource names and turns the answer into a result or a States Language
// error that Retry and Catch can match.
func (e *Engine) call(ctx context.Context, rec record, key string, tc asl.TaskCall) (result json.RawMessage, taskErr error) {
	idem := tc.IdempotencyKey // the interpreter's: execution id + "/" + key
	if idem == "" {
		idem = rec.ID + "/" + key
	}
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	header.Set(IdempotencyKeyHeader, idem)
	header.Set(ExecutionIDHeader, rec.ID)
	body := []byte(tc.Payload())
	if len(body) == 0 {
		body = []byte("null")
	}
	ctx, span := e.startTaskSpan(ctx, rec, tc, header)
	defer func() { endSpan(span, taskErr) }()
	cctx := ctx
	if tc.Timeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, tc.Timeout)
		defer cancel()
	}

	var (
		status int
		resp   []byte
		err    error
	)
	res := tc.Resource
	switch {
	case strings.HasPrefix(res, "function:"):
		if e.invoker == nil {
			return nil, taskFailed("this server does not run functions for workflows")
		}
		status, _, resp, err = e.invoker.Invoke(cctx, rec.Environment, strings.TrimPrefix(res, "function:"), body, header)
	case strings.HasPrefix(res, "service:"):
		if e.services == nil {
			return nil, taskFailed("this server does not call services for workflows")
		}
		name, path, _ := strings.Cut(strings.TrimPrefix(res, "service:"), "/")
		status, _, resp, err = e.services.CallService(cctx, rec.Environment, name, "/"+path, body, header)
	case strings.HasPrefix(res, "http://"), strings.HasPrefix(res, "https://"):
		if e.egress == nil {
			return nil, taskFailed("this server does not make http tasks")
		}
		status, resp, err = e.post(cctx, e.egress.Client(rec.Environment), res, body, header)
	default:
		return nil, taskFailed("unknown resource %q: use function:NAME, service:NAME/PATH or an http(s):// URL", res)
	}
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(cctx.Err(), context.DeadlineExceeded):
			return nil, &asl.Error{Name: "States.Timeout", Cause: fmt.Sprintf("%s did not answer within %s", res, tc.Timeout)}
		}
		return nil, taskFailed("%s: %v", res, err)
	}
	if len(resp) > MaxResultBytes {
		return nil, &asl.Error{Name: "States.DataLimitExceeded", Cause: fmt.Sprintf("%s answered %d bytes; at most %d", res, len(resp), MaxResultBytes)}
	}
	if status < 200 || status > 299 {
		return nil, responseError(status, resp)
	}
	return resultOf(resp), nil
}

// post sends an http task with the client of the execution's environment.
func (e *Engine) post(ctx context.Context, client *http.Client, url string, body []byte, header http.Header) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header = header
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResultBytes+1))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

func taskFailed(format string, args ...any) *asl.Error {
	return &asl.Error{Name: "States.TaskFailed", Cause: fmt.Sprintf(format, args...)}
}

// result is a 2xx body as JSON: itself when it is JSON, null when empty,
// else a JSON string of the text.
func resultOf(b []byte) json.RawMessage {
	if len(bytes.TrimSpace(b)) == 0 {
		return json.RawMessage("null")
	}
	if c, err := compact(b); err == nil {
		return c
	}
	s, _ := json.Marshal(string(bytes.ToValidUTF8(b, []byte("\uFFFD"))))
	return s
}

// responseError names a non-2xx answer. A body such as Lambda's
// {"errorType": "CardDeclined", "errorMessage": "..."} or
// {"error": "CardDeclined", "cause": "..."} names its own error, so that
// Catch can route on it; anything else is States.TaskFailed.
func responseError(status int, body []byte) *asl.Error {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) == nil {
		name := firstString(fields, "errorType", "error")
		if name != "" {
			cause := firstString(fields, "cause", "errorMessage")
			if cause == "" {
				for _, k := range []string{"cause", "errorMessage"} {
					if raw, ok := fields[k]; ok {
						cause = string(raw)
						break
					}
				}
			}
			return &asl.Error{Name: name, Cause: cause}
		}
	}
	text := string(bytes.ToValidUTF8(bytes.TrimSpace(body), []byte("\uFFFD")))
	if len(text) > 1024 {
		cut := 1024
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "…"
	}
	cause := fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
	if text != "" {
		cause += ": " + text
	}
	return &asl.Error{Name: "States.TaskFailed", Cause: cause}
}

func firstString(fields map[string]json.RawMessage, keys ...string) string {
	for _, k := range keys {
		var s string
		if raw, ok := fields[k]; ok && json.Unmarshal(raw, &s) == nil && s != "" {
			return s
		}
	}
	return ""
}
