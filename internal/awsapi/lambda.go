package awsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// Invocations runs function invocations: through the gateway (waking the
// function from zero), or queued with the function's retries and dead
// letters. The API server's Invocations have this shape.
type Invocations interface {
	Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (status int, respHeader http.Header, respBody []byte, err error)
	Enqueue(ctx context.Context, env, fn string, body []byte, header http.Header, callbackURL string) (id string, err error)
}

// Homed is what an Identity may also answer: the environment a plain
// function name means (an instance key's own environment). Without it, or
// when it answers "", a plain name is a function of "default".
type Homed interface {
	Home() string
}

// LambdaPathPrefix starts the path of every Lambda API operation Berth
// serves.
const LambdaPathPrefix = "/2015-03-31/"

// Lambda serves the Lambda API (REST-JSON): Invoke, ListFunctions,
// GetFunction.
func (a *API) Lambda() http.Handler {
	return http.HandlerFunc(a.serveLambda)
}

// lambdaReply is a REST-JSON answer: a status, headers, and a body that
// is JSON (v) or raw bytes.
type lambdaReply struct {
	status int
	header http.Header
	v      any
	raw    []byte
}

func (a *API) serveLambda(w http.ResponseWriter, r *http.Request) {
	reqID := requestID()
	w.Header().Set("X-Amzn-RequestId", reqID)
	rest := strings.TrimPrefix(r.URL.EscapedPath(), LambdaPathPrefix)
	op := "Unknown"
	reply, err := func() (*lambdaReply, error) {
		c, err := a.authenticate(r, a.lambda, a.cfg.MaxPayloadBytes)
		if err != nil {
			var ae *apiError
			if errors.As(err, &ae) && ae.Code == "RequestEntityTooLargeException" {
				ae.Code = "RequestTooLargeException"
			}
			return nil, err
		}
		seg := strings.Split(strings.TrimSuffix(rest, "/"), "/")
		switch {
		case len(seg) == 1 && seg[0] == "functions" && r.Method == http.MethodGet:
			op = "ListFunctions"
			return a.listFunctions(r, c)
		case len(seg) == 2 && seg[0] == "functions" && r.Method == http.MethodGet:
			op = "GetFunction"
			return a.getFunction(r, c, seg[1])
		case len(seg) == 3 && seg[0] == "functions" && seg[2] == "configuration" && r.Method == http.MethodGet:
			op = "GetFunctionConfiguration"
			reply, err := a.getFunction(r, c, seg[1])
			if err == nil {
				reply.v = reply.v.(map[string]any)["Configuration"]
			}
			return reply, err
		case len(seg) == 3 && seg[0] == "functions" && seg[2] == "invocations" && r.Method == http.MethodPost:
			op = "Invoke"
			return a.invoke(r, c, seg[1], reqID)
		}
		return nil, errf(http.StatusNotFound, "UnknownOperationException", "Berth's Lambda API has no operation %s %s (it serves Invoke, ListFunctions, GetFunction)", r.Method, r.URL.Path)
	}()
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = a.internalError(op, err)
		}
		w.Header().Set("X-Amzn-ErrorType", ae.Code)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ae.Status)
		json.NewEncoder(w).Encode(map[string]string{"Type": errorSide(ae.Status), "Message": ae.Message, "message": ae.Message})
		return
	}
	for k, vs := range reply.header {
		w.Header()[k] = vs
	}
	if reply.v != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(reply.status)
		json.NewEncoder(w).Encode(reply.v)
		return
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(reply.status)
	w.Write(reply.raw)
}

func errorSide(status int) string {
	if status >= 500 {
		return "Service"
	}
	return "User"
}

// functionRef resolves a FunctionName as Lambda takes it: a name, a
// partial ARN ENV:function:NAME, or arn:aws:lambda:REGION:ENV:function:NAME,
// each optionally with :QUALIFIER (only $LATEST: Berth invokes the current
// revision).
func functionRef(c *caller, raw string) (env, name string, err error) {
	s, uerr := url.PathUnescape(raw)
	if uerr != nil {
		s = raw
	}
	p := strings.Split(s, ":")
	bad := func() error {
		return errf(http.StatusBadRequest, "ValidationException",
			"1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: a name, ENVIRONMENT:function:NAME or arn:aws:lambda:REGION:ENVIRONMENT:function:NAME", s)
	}
	qualifier := ""
	switch {
	case len(p) == 1 || len(p) == 2:
		env, name = home(c.who), p[0]
		if len(p) == 2 {
			qualifier = p[1]
		}
	case (len(p) == 3 || len(p) == 4) && p[1] == "function":
		env, name = p[0], p[2]
		if len(p) == 4 {
			qualifier = p[3]
		}
	case (len(p) == 7 || len(p) == 8) && p[0] == "arn" && p[2] == "lambda" && p[5] == "function":
		env, name = p[4], p[6]
		if len(p) == 8 {
			qualifier = p[7]
		}
	default:
		return "", "", bad()
	}
	if env == "" || name == "" {
		return "", "", bad()
	}
	if qualifier != "" && qualifier != "$LATEST" {
		return "", "", errf(http.StatusNotFound, "ResourceNotFoundException", "Function not found: %s (Berth serves $LATEST only)", s)
	}
	return env, name, nil
}

func home(who Identity) string {
	if h, ok := who.(Homed); ok && h.Home() != "" {
		return h.Home()
	}
	return "default"
}

func functionARN(region, env, name string) string {
	return "arn:aws:lambda:" + region + ":" + env + ":function:" + name
}

func (a *API) function(ctx context.Context, c *caller, raw string, write bool) (*v1.Function, error) {
	env, name, err := functionRef(c, raw)
	if err != nil {
		return nil, err
	}
	if err := c.who.CanAccess(env, write); err != nil {
		return nil, accessError(err)
	}
	var fn v1.Function
	err = store.Get(ctx, a.cfg.Store, store.Key{Kind: v1.KindFunction, Environment: env, Name: name}, &fn)
	if v1.IsNotFound(err) {
		return nil, errf(http.StatusNotFound, "ResourceNotFoundException", "Function not found: %s", functionARN(c.region, env, name))
	}
	if err != nil {
		return nil, err
	}
	return &fn, nil
}

// configuration is a Function as Lambda's FunctionConfiguration.
func configuration(region string, fn *v1.Function) map[string]any {
	env, name := fn.Metadata.Environment, fn.Metadata.Name
	timeout := 30
	if d, err := time.ParseDuration(fn.Spec.Timeout); err == nil && d > 0 {
		timeout = int((d + time.Second - 1) / time.Second)
	}
	out := map[string]any{
		"FunctionName": name,
		"FunctionArn":  functionARN(region, env, name),
		"Role":         "arn:aws:iam::" + env + ":role/berth",
		"Timeout":      timeout,
		"Version":      "$LATEST",
		"PackageType":  "Image",
		"State":        "Active",
		"Description":  fn.Metadata.Labels["description"],
		"RevisionId":   fn.Metadata.UID + "/" + strconv.FormatInt(fn.Metadata.Generation, 10),
		"LastModified": fn.Metadata.CreationTimestamp.UTC().Format("2006-01-02T15:04:05.000-0700"),
	}
	if m := fn.Spec.Resources.Memory; m != "" {
		if b, err := v1.ParseMemory(m); err == nil {
			out["MemorySize"] = b >> 20
		}
	}
	if d := fn.Status.ImageDigest; strings.HasPrefix(d, "sha256:") {
		out["CodeSha256"] = strings.TrimPrefix(d, "sha256:")
	}
	return out
}

func (a *API) listFunctions(r *http.Request, c *caller) (*lambdaReply, error) {
	ctx := r.Context()
	envs, err := a.environments(ctx, c.who)
	if err != nil {
		return nil, err
	}
	items := []map[string]any{}
	for _, env := range envs {
		fns, _, err := store.List[v1.Function](ctx, a.cfg.Store, v1.KindFunction, env)
		if err != nil {
			return nil, err
		}
		for _, fn := range fns {
			items = append(items, configuration(c.region, fn))
		}
	}
	max, _ := strconv.Atoi(r.URL.Query().Get("MaxItems"))
	items, next, err := page(items, r.URL.Query().Get("Marker"), max, 50)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			ae.Code = "InvalidParameterValueException"
		}
		return nil, err
	}
	return &lambdaReply{status: http.StatusOK, v: map[string]any{"Functions": items, "NextMarker": omitEmpty(next)}}, nil
}

func (a *API) getFunction(r *http.Request, c *caller, raw string) (*lambdaReply, error) {
	fn, err := a.function(r.Context(), c, raw, false)
	if err != nil {
		return nil, err
	}
	return &lambdaReply{status: http.StatusOK, v: map[string]any{
		"Configuration": configuration(c.region, fn),
		"Code":          map[string]any{"RepositoryType": "ECR", "ImageUri": fn.Spec.Image},
	}}, nil
}

// invoke answers Invoke. RequestResponse calls the function through the
// gateway and answers its payload; a function that failed (an HTTP error
// status, a crash, its timeout) is still a 200 with X-Amz-Function-Error,
// as Lambda answers, so the SDKs read the error payload. Event queues the
// invocation (Berth's retries and dead-letter topic apply) and answers 202.
func (a *API) invoke(r *http.Request, c *caller, raw, reqID string) (*lambdaReply, error) {
	ctx := r.Context()
	if a.cfg.Invocations == nil {
		return nil, errf(http.StatusServiceUnavailable, "ServiceException", "this server does not invoke functions")
	}
	if q := r.URL.Query().Get("Qualifier"); q != "" && q != "$LATEST" {
		return nil, errf(http.StatusNotFound, "ResourceNotFoundException", "Function not found: %s:%s (Berth serves $LATEST only)", raw, q)
	}
	fn, err := a.function(ctx, c, raw, true)
	if err != nil {
		return nil, err
	}
	env, name := fn.Metadata.Environment, fn.Metadata.Name
	if len(c.body) > 0 && !json.Valid(c.body) {
		return nil, errf(http.StatusBadRequest, "InvalidRequestContentException", "Could not parse request body into json: the payload is not JSON")
	}
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	header.Set("Lambda-Runtime-Aws-Request-Id", reqID)
	if tp := r.Header.Get("Traceparent"); tp != "" {
		header.Set("Traceparent", tp)
	}
	if cc := r.Header.Get("X-Amz-Client-Context"); cc != "" {
		header.Set("Lambda-Runtime-Client-Context", cc)
	}
	body := c.body
	if len(body) == 0 {
		body = []byte("{}")
	}
	switch typ := r.Header.Get("X-Amz-Invocation-Type"); typ {
	case "", "RequestResponse":
	case "Event":
		id, err := a.cfg.Invocations.Enqueue(ctx, env, name, body, header, "")
		if err != nil {
			return nil, invokeError(c.region, env, name, err)
		}
		return &lambdaReply{status: http.StatusAccepted, header: http.Header{"X-Amzn-Requestid": {id}}, raw: []byte{}}, nil
	case "DryRun":
		return &lambdaReply{status: http.StatusNoContent, raw: []byte{}}, nil
	default:
		return nil, errf(http.StatusBadRequest, "InvalidParameterValueException", "X-Amz-Invocation-Type %q: use RequestResponse, Event or DryRun", typ)
	}
	status, rh, resp, err := a.cfg.Invocations.Invoke(ctx, env, name, body, header)
	if err != nil {
		return nil, invokeError(c.region, env, name, err)
	}
	out := &lambdaReply{status: http.StatusOK, raw: resp, header: http.Header{"X-Amz-Executed-Version": {"$LATEST"}}}
	if ct := rh.Get("Content-Type"); ct != "" {
		out.header.Set("Content-Type", ct)
	}
	if int64(len(resp)) > a.cfg.MaxPayloadBytes {
		out.header.Set("X-Amz-Function-Error", "Unhandled")
		out.raw = errorPayload("Function.ResponseSizeTooLarge", fmt.Sprintf("Response payload size (%d bytes) exceeded maximum allowed payload size (%d bytes).", len(resp), a.cfg.MaxPayloadBytes))
		return out, nil
	}
	if status >= 200 && status < 300 {
		return out, nil
	}
	// Berth's own answer for a function that could not run (the gateway's
	// JSON error) or one that answered an error status.
	var berth v1.Status
	if json.Unmarshal(resp, &berth) == nil && berth.Error.Kind != "" {
		switch berth.Error.Kind {
		case v1.ErrGatewayTimeout, v1.ErrRequestTimeout:
			out.header.Set("X-Amz-Function-Error", "Unhandled")
			out.raw = errorPayload("Sandbox.Timedout", "Task timed out: "+berth.Error.Message)
			return out, nil
		case v1.ErrNotFound:
			return nil, errf(http.StatusNotFound, "ResourceNotFoundException", "Function not found: %s", functionARN(c.region, env, name))
		case v1.ErrTooManyRequests:
			return nil, errf(http.StatusTooManyRequests, "TooManyRequestsException", "Rate Exceeded: %s", berth.Error.Message)
		case v1.ErrUnavailable, v1.ErrBadGateway:
			return nil, errf(http.StatusBadGateway, "ServiceException", "the function could not run: %s", berth.Error.Message)
		}
	}
	out.header.Set("X-Amz-Function-Error", "Unhandled")
	var lambdaErr struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(resp, &lambdaErr) != nil || lambdaErr.ErrorType == "" && lambdaErr.ErrorMessage == "" {
		out.raw = errorPayload(fmt.Sprintf("HTTP%d", status), strings.TrimSpace(string(resp)))
	}
	return out, nil
}

func errorPayload(typ, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"errorType": typ, "errorMessage": msg})
	return b
}

func invokeError(region, env, name string, err error) error {
	switch {
	case v1.IsNotFound(err):
		return errf(http.StatusNotFound, "ResourceNotFoundException", "Function not found: %s", functionARN(region, env, name))
	case v1.KindOf(err) == v1.ErrTooLarge:
		return errf(http.StatusRequestEntityTooLarge, "RequestTooLargeException", "%v", err)
	case v1.KindOf(err) == v1.ErrTooManyRequests:
		return errf(http.StatusTooManyRequests, "TooManyRequestsException", "%v", err)
	case v1.KindOf(err) == v1.ErrUnavailable:
		return errf(http.StatusServiceUnavailable, "ServiceException", "%v", err)
	}
	return err
}
