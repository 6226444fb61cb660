package v1

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const workflowYAML = `
apiVersion: berth.dev/v1
kind: Workflow
metadata: {name: checkout, environment: shop}
spec:
  definition:
    Comment: pay then ship
    StartAt: Pay
    States:
      Pay:
        Type: Task
        Resource: function:pay
        TimeoutSeconds: 30
        Retry: [{ErrorEquals: [States.TaskFailed], MaxAttempts: 3, BackoffRate: 1.5}]
        Next: Ship
      Ship: {Type: Task, Resource: "service:shipping/ship", End: true}
`

const workflowDefJSON = `{"Comment": "pay then ship", "StartAt": "Pay", "States": {
  "Pay": {"Type": "Task", "Resource": "function:pay", "TimeoutSeconds": 30,
          "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 3, "BackoffRate": 1.5}], "Next": "Ship"},
  "Ship": {"Type": "Task", "Resource": "service:shipping/ship", "End": true}}}`

const workflowJSON = `{"apiVersion": "berth.dev/v1", "kind": "Workflow",
 "metadata": {"name": "checkout", "environment": "shop"},
 "spec": {"definition": ` + workflowDefJSON + `}}`

// A definition written as YAML, as a JSON object, or as a JSON string
// (Step Functions' own form) is stored as the same JSON.
func TestDecodeWorkflowDefinitionForms(t *testing.T) {
	stringForm := "apiVersion: berth.dev/v1\nkind: Workflow\nmetadata: {name: checkout, environment: shop}\nspec:\n  definition: |\n    " +
		strings.ReplaceAll(workflowDefJSON, "\n", "\n    ") + "\n"
	var defs []map[string]any
	for name, src := range map[string]string{"yaml": workflowYAML, "json": workflowJSON, "string": stringForm} {
		objs, err := Decode(name, []byte(src))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wf, ok := objs[0].(*Workflow)
		if !ok {
			t.Fatalf("%s: got %T", name, objs[0])
		}
		SetDefaults(wf)
		if err := Validate(wf); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !json.Valid(wf.Spec.Definition) {
			t.Fatalf("%s: definition is not JSON: %s", name, wf.Spec.Definition)
		}
		var def map[string]any
		if err := json.Unmarshal(wf.Spec.Definition, &def); err != nil {
			t.Fatal(err)
		}
		defs = append(defs, def)
	}
	for i := 1; i < len(defs); i++ {
		if !reflect.DeepEqual(defs[0], defs[i]) {
			t.Errorf("definitions differ:\n%v\n%v", defs[0], defs[i])
		}
	}
	// Numbers keep their JSON types: an integer stays an integer.
	if !strings.Contains(string(mustDecodeWorkflow(t, workflowYAML).Spec.Definition), `"MaxAttempts":3`) {
		t.Errorf("MaxAttempts not an integer: %s", mustDecodeWorkflow(t, workflowYAML).Spec.Definition)
	}
}

func mustDecodeWorkflow(t *testing.T, src string) *Workflow {
	t.Helper()
	objs, err := Decode("wf.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return objs[0].(*Workflow)
}

// Encode then Decode gives back the same workflow, in either format.
func TestWorkflowRoundTrip(t *testing.T) {
	wf := mustDecodeWorkflow(t, workflowYAML)
	SetDefaults(wf)
	for _, format := range []string{"json", "yaml"} {
		b, err := Encode(wf, format)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := DecodeObject(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, b)
		}
		if got := obj.(*Workflow); string(got.Spec.Definition) != string(wf.Spec.Definition) {
			t.Errorf("%s: definition %s, want %s", format, got.Spec.Definition, wf.Spec.Definition)
		}
	}
}

func TestValidateWorkflow(t *testing.T) {
	for _, tc := range []struct{ def, field string }{
		{``, "spec.definition"},
		{`definition: null`, "spec.definition"},
		{`definition: [1, 2]`, "spec.definition"},
		{`definition: {States: {A: {Type: Succeed}}}`, "spec.definition.StartAt"},
		{`definition: {StartAt: 3, States: {A: {Type: Succeed}}}`, "spec.definition.StartAt"},
		{`definition: {StartAt: A}`, "spec.definition.States"},
		{`definition: {StartAt: A, States: []}`, "spec.definition.States"},
		{`definition: {StartAt: A, States: {}}`, "spec.definition.States"},
	} {
		src := "apiVersion: berth.dev/v1\nkind: Workflow\nmetadata: {name: w}\nspec: {" + tc.def + "}\n"
		wf := mustDecodeWorkflow(t, src)
		SetDefaults(wf)
		err := Validate(wf)
		if err == nil {
			t.Errorf("%s: valid, want an error at %s", tc.def, tc.field)
			continue
		}
		if e := asError(t, err); e.Field != tc.field || e.Kind != ErrInvalid {
			t.Errorf("%s: %v (field %q), want field %q", tc.def, err, e.Field, tc.field)
		}
	}
}

// Errors inside a definition name the field path and line, as elsewhere.
func TestDecodeWorkflowErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"definition:\n    StartAt: A\n    StartAt: B\n", `spec.definition.StartAt: line 7: duplicate key "StartAt"`},
		{"definition: '{\"StartAt\": '\n", "spec.definition: line 5: the string is not valid JSON"},
		{"definition: {States: {A: {Seconds: .nan}}}\n", "spec.definition.States.A.Seconds: line 5: expected a number"},
	} {
		src := "apiVersion: berth.dev/v1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  " + tc.src
		_, err := Decode("wf.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}
