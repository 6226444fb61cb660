package awsapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/awsapi"
	"berth.dev/berth/internal/sigv4"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/workflow/engine"
)

// identity acts in some environments, writing or only reading, as a
// token's key does.
type identity struct {
	envs  []string
	write bool
}

func (i identity) CanAccess(env string, write bool) error {
	if !slices.Contains(i.envs, env) {
		return v1.Errorf(v1.ErrForbidden, "not in %q", env)
	}
	if write && !i.write {
		return v1.Errorf(v1.ErrForbidden, "read only")
	}
	return nil
}

type key struct {
	secret string
	who    identity
}

var keys = map[string]key{
	"BKDEPLOYER": {"deployer-secret", identity{envs: []string{"default"}, write: true}},
	"BKVIEWER":   {"viewer-secret", identity{envs: []string{"default"}}},
	"BKOTHER":    {"other-secret", identity{envs: []string{"other"}, write: true}},
}

// workloads answers the tasks' function calls: double doubles n, decline
// fails as a Lambda handler reports an error, slow answers when released
// (or never), and callback hands its task token to the test.
type workloads struct {
	mu      sync.Mutex
	release chan struct{}
	tokens  chan string
}

func (w *workloads) Invoke(ctx context.Context, env, fn string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	switch fn {
	case "double":
		var in struct{ N int }
		json.Unmarshal(body, &in)
		return 200, nil, fmt.Appendf(nil, `{"n": %d}`, in.N*2), nil
	case "decline":
		return 500, nil, []byte(`{"errorType": "CardDeclined", "errorMessage": "insufficient funds"}`), nil
	case "slow":
		select {
		case <-ctx.Done():
			return 0, nil, nil, ctx.Err()
		case <-w.release:
			return 200, nil, []byte(`"late"`), nil
		}
	case "callback":
		var in struct{ Token string }
		json.Unmarshal(body, &in)
		w.tokens <- in.Token
		return 202, nil, nil, nil
	}
	return 404, nil, []byte("no function " + fn), nil
}

type fixture struct {
	st      store.Store
	eng     *engine.Engine
	url     string
	work    *workloads
	cancel  context.CancelFunc
	stopped chan struct{}
}

const ordersDef = `{"StartAt": "Double", "States": {
  "Double": {"Type": "Task", "Resource": "function:double", "Parameters": {"n.$": "$.n"}, "Next": "Done"},
  "Done": {"Type": "Succeed"}}}`

const declineDef = `{"StartAt": "Pay", "States": {"Pay": {"Type": "Task", "Resource": "function:decline", "End": true}}}`

const slowDef = `{"StartAt": "Wait", "States": {"Wait": {"Type": "Task", "Resource": "function:slow", "End": true}}}`

func newFixture(t *testing.T, workflows map[string]string) *fixture {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for _, env := range []string{"default", "other"} {
		e := &v1.Environment{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEnvironment}, Metadata: v1.ObjectMeta{Name: env}}
		if err := store.Create(ctx, st, e); err != nil {
			t.Fatal(err)
		}
	}
	for name, def := range workflows {
		wf := &v1.Workflow{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindWorkflow},
			Metadata: v1.ObjectMeta{Name: name, Environment: "default"}, Spec: v1.WorkflowSpec{Definition: json.RawMessage(def)}}
		if err := store.Create(ctx, st, wf); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{st: st, work: &workloads{release: make(chan struct{}), tokens: make(chan string, 16)}, stopped: make(chan struct{})}
	f.eng = engine.New(engine.Config{Store: st, Invoker: f.work, Logger: slog.New(slog.DiscardHandler)})
	runCtx, cancel := context.WithCancel(ctx)
	f.cancel = cancel
	go func() { f.eng.Run(runCtx); close(f.stopped) }()
	t.Cleanup(func() { cancel(); <-f.stopped })
	api := awsapi.New(awsapi.Config{
		Store: st, Executions: f.eng,
		Keys: func(ctx context.Context, id string) (string, awsapi.Identity, error) {
			k, ok := keys[id]
			if !ok {
				return "", nil, sigv4.ErrUnknownKey
			}
			return k.secret, k.who, nil
		},
	})
	srv := httptest.NewServer(awsapi.Route(api, http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// noHostPrefix keeps StartSyncExecution on the endpoint given, where the
// SDK would put "sync-" before its host name (docs/aws.md).
func noHostPrefix(o *sfn.Options) {
	o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("BerthNoHostPrefix",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				return next.HandleInitialize(smithyhttp.DisableEndpointHostPrefix(ctx, true), in)
			}), middleware.Before)
	})
}

func (f *fixture) client(id string) *sfn.Client {
	secret := keys[id].secret
	if secret == "" {
		secret = "whatever"
	}
	return f.clientWith(id, secret)
}

func (f *fixture) clientWith(id, secret string) *sfn.Client {
	return sfn.New(sfn.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(f.url),
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		Retryer:      aws.NopRetryer{},
	}, noHostPrefix)
}

const smOrders = "arn:aws:states:us-east-1:default:stateMachine:orders"

func waitDone(t *testing.T, c *sfn.Client, arn string) *sfn.DescribeExecutionOutput {
	t.Helper()
	return testutil.WaitForValue(t, 10*time.Second, "the execution to finish", func() (*sfn.DescribeExecutionOutput, bool) {
		out, err := c.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		if err != nil {
			t.Fatalf("DescribeExecution: %v", err)
		}
		return out, out.Status != types.ExecutionStatusRunning
	})
}

func TestStepFunctionsRunsAWorkflowThroughTheSDK(t *testing.T) {
	f := newFixture(t, map[string]string{"orders": ordersDef, "decline": declineDef})
	c := f.client("BKDEPLOYER")
	ctx := context.Background()

	list, err := c.ListStateMachines(ctx, &sfn.ListStateMachinesInput{})
	if err != nil {
		t.Fatal(err)
	}
	var arns []string
	for _, sm := range list.StateMachines {
		arns = append(arns, aws.ToString(sm.StateMachineArn))
	}
	if want := []string{"arn:aws:states:us-east-1:default:stateMachine:decline", smOrders}; !slices.Equal(arns, want) {
		t.Fatalf("ListStateMachines = %v, want %v", arns, want)
	}
	desc, err := c.DescribeStateMachine(ctx, &sfn.DescribeStateMachineInput{StateMachineArn: aws.String(smOrders)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(desc.Name) != "orders" || desc.Status != types.StateMachineStatusActive || !strings.Contains(aws.ToString(desc.Definition), "function:double") {
		t.Fatalf("DescribeStateMachine = %+v", desc)
	}

	start, err := c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(smOrders), Input: aws.String(`{"n": 21}`)})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(start.ExecutionArn)
	if !strings.HasPrefix(arn, "arn:aws:states:us-east-1:default:execution:orders:") || start.StartDate == nil {
		t.Fatalf("StartExecution = %s %v", arn, start.StartDate)
	}
	done := waitDone(t, c, arn)
	if done.Status != types.ExecutionStatusSucceeded || aws.ToString(done.Output) != `{"n":42}` || aws.ToString(done.StateMachineArn) != smOrders || done.StopDate == nil {
		t.Fatalf("DescribeExecution = %s %q %s", done.Status, aws.ToString(done.Output), aws.ToString(done.StateMachineArn))
	}

	hist, err := c.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	var typesSeen []string
	for _, ev := range hist.Events {
		typesSeen = append(typesSeen, string(ev.Type))
		switch ev.Type {
		case types.HistoryEventTypeExecutionStarted:
			if aws.ToString(ev.ExecutionStartedEventDetails.Input) != `{"n":21}` {
				t.Errorf("ExecutionStarted input = %q", aws.ToString(ev.ExecutionStartedEventDetails.Input))
			}
		case types.HistoryEventTypeTaskScheduled:
			d := ev.TaskScheduledEventDetails
			if aws.ToString(d.ResourceType) != "function" || aws.ToString(d.Resource) != "double" || aws.ToString(d.Parameters) != `{"n":21}` {
				t.Errorf("TaskScheduled = %+v", d)
			}
		case types.HistoryEventTypeTaskSucceeded:
			if aws.ToString(ev.TaskSucceededEventDetails.Output) != `{"n":42}` {
				t.Errorf("TaskSucceeded output = %q", aws.ToString(ev.TaskSucceededEventDetails.Output))
			}
		case types.HistoryEventTypeTaskStateEntered:
			if aws.ToString(ev.StateEnteredEventDetails.Name) != "Double" {
				t.Errorf("TaskStateEntered name = %q", aws.ToString(ev.StateEnteredEventDetails.Name))
			}
		}
	}
	want := []string{"ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskSucceeded", "TaskStateExited",
		"SucceedStateEntered", "SucceedStateExited", "ExecutionSucceeded"}
	if !slices.Equal(typesSeen, want) {
		t.Fatalf("history = %v, want %v", typesSeen, want)
	}
	// Paged backwards, two at a time.
	rev, err := c.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(arn), ReverseOrder: true, MaxResults: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rev.Events) != 2 || rev.Events[0].Type != types.HistoryEventTypeExecutionSucceeded || rev.NextToken == nil {
		t.Fatalf("reversed page = %d events, first %s, next %v", len(rev.Events), rev.Events[0].Type, rev.NextToken)
	}

	execs, err := c.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String(smOrders), StatusFilter: types.ExecutionStatusSucceeded})
	if err != nil {
		t.Fatal(err)
	}
	if len(execs.Executions) != 1 || aws.ToString(execs.Executions[0].ExecutionArn) != arn {
		t.Fatalf("ListExecutions = %+v", execs.Executions)
	}

	// A name is the execution's id; the same start again is the same
	// execution, another input under that name is refused.
	named, err := c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(smOrders), Name: aws.String("order-7"), Input: aws.String(`{"n": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(named.ExecutionArn) != "arn:aws:states:us-east-1:default:execution:orders:order-7" {
		t.Fatalf("named execution ARN = %s", aws.ToString(named.ExecutionArn))
	}
	again, err := c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(smOrders), Name: aws.String("order-7"), Input: aws.String(`{"n": 1}`)})
	if err != nil || aws.ToString(again.ExecutionArn) != aws.ToString(named.ExecutionArn) {
		t.Fatalf("the same start again = %v, %v", again, err)
	}
	_, err = c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(smOrders), Name: aws.String("order-7"), Input: aws.String(`{"n": 2}`)})
	var exists *types.ExecutionAlreadyExists
	if !errors.As(err, &exists) {
		t.Fatalf("another input under a used name: %v, want ExecutionAlreadyExists", err)
	}

	sync, err := c.StartSyncExecution(ctx, &sfn.StartSyncExecutionInput{StateMachineArn: aws.String(smOrders), Input: aws.String(`{"n": 5}`)})
	if err != nil {
		t.Fatal(err)
	}
	if sync.Status != types.SyncExecutionStatusSucceeded || aws.ToString(sync.Output) != `{"n":10}` {
		t.Fatalf("StartSyncExecution = %s %q", sync.Status, aws.ToString(sync.Output))
	}
	failed, err := c.StartSyncExecution(ctx, &sfn.StartSyncExecutionInput{StateMachineArn: aws.String("arn:aws:states:us-east-1:default:stateMachine:decline")})
	if err != nil {
		t.Fatal(err)
	}
	if failed.Status != types.SyncExecutionStatusFailed || aws.ToString(failed.Error) != "CardDeclined" || aws.ToString(failed.Cause) != "insufficient funds" {
		t.Fatalf("failing StartSyncExecution = %s %q %q", failed.Status, aws.ToString(failed.Error), aws.ToString(failed.Cause))
	}
}

func TestStepFunctionsStopExecution(t *testing.T) {
	f := newFixture(t, map[string]string{"slow": slowDef})
	c := f.client("BKDEPLOYER")
	ctx := context.Background()
	start, err := c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String("arn:aws:states:us-east-1:default:stateMachine:slow")})
	if err != nil {
		t.Fatal(err)
	}
	// A viewer may look but not stop.
	_, err = f.client("BKVIEWER").StopExecution(ctx, &sfn.StopExecutionInput{ExecutionArn: start.ExecutionArn})
	if code := apiCode(err); code != "AccessDeniedException" {
		t.Fatalf("a viewer's StopExecution: %v, want AccessDeniedException", err)
	}
	stop, err := c.StopExecution(ctx, &sfn.StopExecutionInput{ExecutionArn: start.ExecutionArn, Error: aws.String("Cancelled"), Cause: aws.String("the customer left")})
	if err != nil {
		t.Fatal(err)
	}
	if stop.StopDate == nil {
		t.Fatal("StopExecution gave no stopDate")
	}
	d, err := c.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: start.ExecutionArn})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != types.ExecutionStatusAborted || aws.ToString(d.Error) != "Cancelled" || aws.ToString(d.Cause) != "the customer left" {
		t.Fatalf("stopped execution = %s %q %q", d.Status, aws.ToString(d.Error), aws.ToString(d.Cause))
	}
	// Stopping it again changes nothing.
	if _, err := c.StopExecution(ctx, &sfn.StopExecutionInput{ExecutionArn: start.ExecutionArn}); err != nil {
		t.Fatalf("stopping a stopped execution: %v", err)
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestStepFunctionsErrorsAreTheOnesTheSDKKnows(t *testing.T) {
	f := newFixture(t, map[string]string{"orders": ordersDef})
	ctx := context.Background()
	c := f.client("BKDEPLOYER")

	_, err := c.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String("arn:aws:states:us-east-1:default:execution:orders:nope")})
	var noExec *types.ExecutionDoesNotExist
	if !errors.As(err, &noExec) {
		t.Errorf("unknown execution: %v, want ExecutionDoesNotExist", err)
	}
	_, err = c.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String("arn:aws:states:us-east-1:default:execution:orders:nope")})
	if !errors.As(err, &noExec) {
		t.Errorf("history of an unknown execution: %v, want ExecutionDoesNotExist", err)
	}
	_, err = c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String("arn:aws:states:us-east-1:default:stateMachine:nope")})
	var noSM *types.StateMachineDoesNotExist
	if !errors.As(err, &noSM) {
		t.Errorf("unknown state machine: %v, want StateMachineDoesNotExist", err)
	}
	_, err = c.DescribeStateMachine(ctx, &sfn.DescribeStateMachineInput{StateMachineArn: aws.String("orders")})
	var badArn *types.InvalidArn
	if !errors.As(err, &badArn) {
		t.Errorf("a name for an ARN: %v, want InvalidArn", err)
	}
	_, err = c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(smOrders), Input: aws.String("{not json")})
	var badInput *types.InvalidExecutionInput
	if !errors.As(err, &badInput) {
		t.Errorf("input not JSON: %v, want InvalidExecutionInput", err)
	}
	_, err = c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(smOrders), Name: aws.String("no spaces please")})
	var badName *types.InvalidName
	if !errors.As(err, &badName) {
		t.Errorf("a bad name: %v, want InvalidName", err)
	}

	// Another environment's key sees nothing of default's and may do
	// nothing there.
	other := f.client("BKOTHER")
	list, err := other.ListStateMachines(ctx, &sfn.ListStateMachinesInput{})
	if err != nil || len(list.StateMachines) != 0 {
		t.Errorf("another environment's ListStateMachines = %v, %v; want none", list, err)
	}
	if _, err := other.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(smOrders)}); apiCode(err) != "AccessDeniedException" {
		t.Errorf("another environment's StartExecution: %v, want AccessDeniedException", err)
	}

	// Signatures.
	if _, err := f.clientWith("BKDEPLOYER", "wrong-secret").ListStateMachines(ctx, &sfn.ListStateMachinesInput{}); apiCode(err) != "InvalidSignatureException" {
		t.Errorf("a wrong secret: %v, want InvalidSignatureException", err)
	}
	if _, err := f.clientWith("BKNOBODY", "x").ListStateMachines(ctx, &sfn.ListStateMachinesInput{}); apiCode(err) != "UnrecognizedClientException" {
		t.Errorf("an unknown key: %v, want UnrecognizedClientException", err)
	}

	// An unknown operation, signed.
	req, _ := http.NewRequest(http.MethodPost, f.url+"/", strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "AWSStepFunctions.CreateActivity")
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	sigv4.Signer{AccessKeyID: "BKDEPLOYER", Secret: "deployer-secret", Region: "us-east-1", Service: "states"}.Sign(req, sha256Hex("{}"), time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 400 || body.Type != "UnknownOperationException" || body.Message == "" {
		t.Errorf("unknown operation: %d %+v", resp.StatusCode, body)
	}
	// An old signature: the clock is 20 minutes off.
	req, _ = http.NewRequest(http.MethodPost, f.url+"/", strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "AWSStepFunctions.ListStateMachines")
	sigv4.Signer{AccessKeyID: "BKDEPLOYER", Secret: "deployer-secret", Region: "us-east-1", Service: "states"}.Sign(req, sha256Hex("{}"), time.Now().Add(-20*time.Minute))
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	json.NewDecoder(resp2.Body).Decode(&body)
	if resp2.StatusCode != 403 || body.Type != "InvalidSignatureException" || !strings.Contains(body.Message, "Signature expired") {
		t.Errorf("an expired request: %d %+v", resp2.StatusCode, body)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

const approveDef = `{"StartAt": "Ask", "States": {
  "Ask": {"Type": "Task", "Resource": "function:callback.waitForTaskToken",
    "Parameters": {"token.$": "$$.Task.Token"}, "ResultPath": "$.approval", "Next": "Again"},
  "Again": {"Type": "Task", "Resource": "function:callback.waitForTaskToken",
    "Parameters": {"token.$": "$$.Task.Token"}, "ResultPath": "$.second",
    "Catch": [{"ErrorEquals": ["Rejected"], "ResultPath": "$.rejected", "Next": "Done"}], "Next": "Done"},
  "Done": {"Type": "Succeed"}}}`

func (f *fixture) token(t *testing.T) string {
	t.Helper()
	select {
	case tok := <-f.work.tokens:
		return tok
	case <-time.After(10 * time.Second):
		t.Fatal("the task never handed out its token")
	}
	return ""
}

func TestStepFunctionsTaskTokenRoundTrip(t *testing.T) {
	f := newFixture(t, map[string]string{"approve": approveDef})
	c := f.client("BKDEPLOYER")
	ctx := context.Background()
	start, err := c.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String("arn:aws:states:us-east-1:default:stateMachine:approve"), Input: aws.String(`{"order": 3}`)})
	if err != nil {
		t.Fatal(err)
	}
	tok := f.token(t)

	// Only a key that may write in the token's environment answers it.
	if _, err := f.client("BKVIEWER").SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(tok), Output: aws.String(`{}`)}); apiCode(err) != "AccessDeniedException" {
		t.Fatalf("a viewer's SendTaskSuccess: %v, want AccessDeniedException", err)
	}
	if _, err := c.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(tok), Output: aws.String(`{not json`)}); !errorAs[*types.InvalidOutput](err) {
		t.Fatalf("output not JSON: %v, want InvalidOutput", err)
	}
	if _, err := c.SendTaskHeartbeat(ctx, &sfn.SendTaskHeartbeatInput{TaskToken: aws.String(tok)}); err != nil {
		t.Fatalf("SendTaskHeartbeat: %v", err)
	}
	if _, err := c.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(tok), Output: aws.String(`{"approved": true}`)}); err != nil {
		t.Fatalf("SendTaskSuccess: %v", err)
	}
	if _, err := c.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(tok), Output: aws.String(`{}`)}); !errorAs[*types.TaskTimedOut](err) {
		t.Fatalf("the same token twice: %v, want TaskTimedOut", err)
	}
	if _, err := c.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String("bogus"), Output: aws.String(`{}`)}); !errorAs[*types.InvalidToken](err) {
		t.Fatalf("a bogus token: %v, want InvalidToken", err)
	}

	// The second task is refused; Catch routes on the error named.
	tok2 := f.token(t)
	if _, err := c.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: aws.String(tok2), Error: aws.String("Rejected"), Cause: aws.String("too dear")}); err != nil {
		t.Fatalf("SendTaskFailure: %v", err)
	}
	done := waitDone(t, c, aws.ToString(start.ExecutionArn))
	want := `{"approval":{"approved":true},"order":3,"rejected":{"Cause":"too dear","Error":"Rejected"}}`
	if done.Status != types.ExecutionStatusSucceeded || aws.ToString(done.Output) != want {
		t.Fatalf("execution = %s %s", done.Status, aws.ToString(done.Output))
	}
	if _, err := c.SendTaskHeartbeat(ctx, &sfn.SendTaskHeartbeatInput{TaskToken: aws.String(tok2)}); !errorAs[*types.TaskTimedOut](err) {
		t.Fatalf("a heartbeat after the end: %v, want TaskTimedOut", err)
	}
}

func errorAs[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}
