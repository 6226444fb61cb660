package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

// awsOptions are what docs/aws.md tells a user to set: Berth's API
// address as the endpoint, a key pair from `berth token create --aws`.
func (s *server) sfnClient(id, secret string) *sfn.Client {
	return sfn.New(sfn.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://" + s.apiAddr),
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""),
		Retryer:     aws.NopRetryer{},
	}, func(o *sfn.Options) {
		// StartSyncExecution would go to sync-HOST otherwise.
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("BerthNoHostPrefix",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					return next.HandleInitialize(smithyhttp.DisableEndpointHostPrefix(ctx, true), in)
				}), middleware.Before)
		})
	})
}

func (s *server) lambdaClient(id, secret string) *lambda.Client {
	return lambda.New(lambda.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://" + s.apiAddr),
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""),
		Retryer:     aws.NopRetryer{},
		HTTPClient:  &http.Client{Timeout: 2 * time.Minute},
	})
}

const approvalWorkflow = `apiVersion: berth.dev/v1
kind: Workflow
metadata: {name: approval}
spec:
  definition:
    StartAt: Ask
    States:
      Ask:
        Type: Task
        Resource: "function:worker.waitForTaskToken"
        Parameters: {"token.$": "$$.Task.Token", "order.$": "$.order"}
        ResultPath: "$.approval"
        Next: Charge
      Charge:
        Type: Task
        Resource: "function:worker"
        ResultSelector: {"charged.$": "$.version"}
        ResultPath: "$.payment"
        End: true
`

// TestAWSAPIs: the AWS SDK's Step Functions and Lambda clients, pointed
// at Berth's API address with a key of `berth token create --aws`, run a
// workflow (a task token round trip included) and invoke a function woken
// from zero, synchronously and as an Event; the key dies with its token.
func TestAWSAPIs(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: worker}
spec: {image: %s}
`, echoV1)+"---\n"+approvalWorkflow, "apply", "-f", "-")

	var tok struct {
		Metadata        v1.ObjectMeta `json:"metadata"`
		AccessKeyID     string        `json:"accessKeyId"`
		SecretAccessKey string        `json:"secretAccessKey"`
	}
	out := s.mustBerth("", "token", "create", "--env", "default", "--role", "deployer", "--name", "app", "--aws", "-o", "json")
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.AccessKeyID == "" || tok.SecretAccessKey == "" {
		t.Fatalf("token create --aws: %v\n%s", err, out)
	}
	states := s.sfnClient(tok.AccessKeyID, tok.SecretAccessKey)
	fns := s.lambdaClient(tok.AccessKeyID, tok.SecretAccessKey)

	t.Run("Step Functions with a task token", func(t *testing.T) {
		start, err := states.StartExecution(ctx, &sfn.StartExecutionInput{
			StateMachineArn: aws.String("arn:aws:states:us-east-1:default:stateMachine:approval"),
			Input:           aws.String(`{"order": 42}`),
		})
		if err != nil {
			t.Fatal(err)
		}
		// The worker got the token; the history shows what it was sent.
		token := testutil.WaitForValue(t, 90*time.Second, "the task to be scheduled with its token", func() (string, bool) {
			h, err := states.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{ExecutionArn: start.ExecutionArn})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range h.Events {
				if ev.Type == sfntypes.HistoryEventTypeTaskScheduled {
					var p struct{ Token string }
					json.Unmarshal([]byte(aws.ToString(ev.TaskScheduledEventDetails.Parameters)), &p)
					return p.Token, p.Token != ""
				}
			}
			return "", false
		})
		d, err := states.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: start.ExecutionArn})
		if err != nil || d.Status != sfntypes.ExecutionStatusRunning {
			t.Fatalf("waiting for its token: %v %v", d, err)
		}
		if _, err := states.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(token), Output: aws.String(`{"by": "alice"}`)}); err != nil {
			t.Fatal(err)
		}
		done := testutil.WaitForValue(t, 90*time.Second, "the execution to finish", func() (*sfn.DescribeExecutionOutput, bool) {
			d, err := states.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: start.ExecutionArn})
			if err != nil {
				t.Fatal(err)
			}
			return d, d.Status != sfntypes.ExecutionStatusRunning
		})
		var got map[string]any
		json.Unmarshal([]byte(aws.ToString(done.Output)), &got)
		if done.Status != sfntypes.ExecutionStatusSucceeded || fmt.Sprint(got["approval"]) != "map[by:alice]" || fmt.Sprint(got["payment"]) != "map[charged:v1]" {
			t.Fatalf("execution = %s %s %s", done.Status, aws.ToString(done.Output), aws.ToString(done.Cause))
		}
		list, err := states.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String("arn:aws:states:us-east-1:default:stateMachine:approval")})
		if err != nil || len(list.Executions) != 1 {
			t.Fatalf("ListExecutions = %v, %v", list, err)
		}
		// The same execution through Berth's own CLI.
		id := aws.ToString(start.ExecutionArn)[strings.LastIndex(aws.ToString(start.ExecutionArn), ":")+1:]
		if out := s.mustBerth("", "workflow", "list", "approval"); !strings.Contains(out, id) || !strings.Contains(out, "SUCCEEDED") {
			t.Errorf("berth workflow list:\n%s", out)
		}
	})

	t.Run("Lambda Invoke", func(t *testing.T) {
		res, err := fns.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("worker"), Payload: []byte(`{"hello": "lambda"}`)})
		if err != nil {
			t.Fatalf("Invoke: %v\n%s", err, s.logs())
		}
		var body map[string]string
		if json.Unmarshal(res.Payload, &body); res.StatusCode != 200 || res.FunctionError != nil || body["version"] != "v1" {
			t.Fatalf("Invoke = %d %v %s", res.StatusCode, res.FunctionError, res.Payload)
		}
		list, err := fns.ListFunctions(ctx, &lambda.ListFunctionsInput{})
		if err != nil || len(list.Functions) != 1 || aws.ToString(list.Functions[0].FunctionArn) != "arn:aws:lambda:us-east-1:default:function:worker" {
			t.Fatalf("ListFunctions = %v, %v", list, err)
		}
		ev, err := fns.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("worker"), InvocationType: lambdatypes.InvocationTypeEvent, Payload: []byte(`{"event": 1}`)})
		if err != nil || ev.StatusCode != 202 {
			t.Fatalf("Invoke Event = %v, %v", ev, err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(ev.ResultMetadata)
		testutil.WaitForState(t, 90*time.Second, "the Event invocation "+id+" to succeed", func() (bool, string) {
			inv, err := s.client.Invocation(ctx, "default", id)
			return err == nil && inv.Status == v1.InvocationSucceeded, fmt.Sprintf("%+v %v", inv, err)
		})
		if out, _, _ := s.berth("", "logs", "worker"); !strings.Contains(out, `body "{\"event\": 1}"`) {
			t.Errorf("the Event's delivery is not in the worker's logs:\n%s", out)
		}
	})

	t.Run("a Go Lambda handler built by berth build", func(t *testing.T) {
		// internal/build/testdata/golambda: aws-lambda-go's lambda.Start,
		// written for AWS and unchanged.
		_, self, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(self), "..", "internal", "build", "testdata", "golambda")
		out := s.mustBerth("", "build", src, "-t", "golambda:v1")
		if !strings.Contains(out, "built golambda:v1 sha256:") {
			t.Fatalf("build: %s", out)
		}
		s.mustBerth(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: hello}
spec: {image: "golambda:v1", timeout: 20s}
`, "apply", "-f", "-")
		// Through the gateway: an API Gateway v2 event, a proxy response.
		var body string
		testutil.WaitForState(t, 90*time.Second, "the handler answering through the gateway", func() (bool, string) {
			code, b, err := s.gatewayDo(http.MethodPost, "hello.default.berth.localhost", "/orders/7?full=1", []byte("hi"))
			body = b
			return err == nil && code == 201, fmt.Sprintf("%d %v %s", code, err, b)
		})
		if want := `POST /orders/7?full=1 body="hi" name=hello deadline=true arn=arn:aws:lambda:us-east-1:default:function:hello`; body != want {
			t.Fatalf("through the gateway: %q, want %q", body, want)
		}
		// Through the Lambda API: the event as it is.
		res, err := fns.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{"n": 5}`)})
		if err != nil || res.FunctionError != nil || !strings.HasPrefix(string(res.Payload), `{"echo":{"n":5},"requestId":"`) {
			t.Fatalf("Invoke = %v %s, %v", res.FunctionError, res.Payload, err)
		}
		res, err = fns.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{"fail": "card declined"}`)})
		if err != nil || aws.ToString(res.FunctionError) != "Unhandled" || !strings.Contains(string(res.Payload), `"errorMessage":"card declined"`) {
			t.Fatalf("a handler's error through Invoke = %v %s, %v", aws.ToString(res.FunctionError), res.Payload, err)
		}
		ev, err := fns.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), InvocationType: lambdatypes.InvocationTypeEvent, Payload: []byte(`{"n": 6}`)})
		if err != nil {
			t.Fatal(err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(ev.ResultMetadata)
		testutil.WaitForState(t, 90*time.Second, "the Event to the handler to succeed", func() (bool, string) {
			inv, err := s.client.Invocation(ctx, "default", id)
			return err == nil && inv.Status == v1.InvocationSucceeded, fmt.Sprintf("%+v %v", inv, err)
		})
	})

	t.Run("a Node Lambda handler built by berth build", func(t *testing.T) {
		// internal/build/testdata/nodelambda: exports.handler, written for
		// AWS and unchanged; berth build tells it from a Node server.
		_, self, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(self), "..", "internal", "build", "testdata", "nodelambda")
		out := s.mustBerth("", "build", src, "-t", "nodelambda:v1")
		if !strings.Contains(out, "built nodelambda:v1 sha256:") {
			t.Fatalf("build: %s", out)
		}
		s.mustBerth(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: hello-node}
spec: {image: "nodelambda:v1", timeout: 20s}
`, "apply", "-f", "-")
		var body string
		testutil.WaitForState(t, 90*time.Second, "the handler answering through the gateway", func() (bool, string) {
			code, b, err := s.gatewayDo(http.MethodPost, "hello-node.default.berth.localhost", "/orders/7?full=1", []byte("hi"))
			body = b
			return err == nil && code == 201, fmt.Sprintf("%d %v %s", code, err, b)
		})
		if want := `POST /orders/7?full=1 body="hi" name=hello-node deadline=true arn=arn:aws:lambda:us-east-1:default:function:hello-node`; body != want {
			t.Fatalf("through the gateway: %q, want %q", body, want)
		}
		res, err := fns.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello-node"), Payload: []byte(`{"n": 5}`)})
		if err != nil || res.FunctionError != nil || !strings.HasPrefix(string(res.Payload), `{"echo":{"n":5},"requestId":"`) {
			t.Fatalf("Invoke = %v %s, %v", res.FunctionError, res.Payload, err)
		}
		res, err = fns.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello-node"), Payload: []byte(`{"fail": "card declined"}`)})
		if err != nil || aws.ToString(res.FunctionError) != "Unhandled" || !strings.Contains(string(res.Payload), `"errorType":"Error","errorMessage":"card declined"`) {
			t.Fatalf("a handler's error through Invoke = %v %s, %v", aws.ToString(res.FunctionError), res.Payload, err)
		}
		ev, err := fns.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello-node"), InvocationType: lambdatypes.InvocationTypeEvent, Payload: []byte(`{"n": 6}`)})
		if err != nil {
			t.Fatal(err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(ev.ResultMetadata)
		testutil.WaitForState(t, 90*time.Second, "the Event to the handler to succeed", func() (bool, string) {
			inv, err := s.client.Invocation(ctx, "default", id)
			return err == nil && inv.Status == v1.InvocationSucceeded, fmt.Sprintf("%+v %v", inv, err)
		})
	})

	t.Run("the key dies with its token", func(t *testing.T) {
		s.mustBerth("", "token", "revoke", "app")
		_, err := fns.ListFunctions(ctx, &lambda.ListFunctionsInput{})
		if code := s3Code(err); code != "UnrecognizedClientException" {
			t.Fatalf("a revoked token's key: %v, want UnrecognizedClientException", err)
		}
		_, err = states.ListStateMachines(ctx, &sfn.ListStateMachinesInput{})
		if code := s3Code(err); code != "UnrecognizedClientException" {
			t.Fatalf("a revoked token's key: %v, want UnrecognizedClientException", err)
		}
	})
}
