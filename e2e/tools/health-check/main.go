// Command health-check says how Flux's kstatus and an Argo CD Lua health
// check see Kubernetes objects. kiln's end-to-end tests pipe live
// MultiArchBuilds into it (`kubectl get -o json`, one object or a List) to
// prove the operator's conditions and the chart's health script with the
// libraries those tools run: sigs.k8s.io/cli-utils' kstatus and gopher-lua,
// the Lua interpreter Argo CD embeds.
//
// Prints one JSON line per object:
//
//	{"name":…,"kstatus":"InProgress","kstatusMessage":…,"argocd":"Progressing","argocdMessage":…}
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name           string `json:"name"`
	Kstatus        string `json:"kstatus"`
	KstatusMessage string `json:"kstatusMessage"`
	ArgoCD         string `json:"argocd,omitempty"`
	ArgoCDMessage  string `json:"argocdMessage,omitempty"`
}

func main() {
	script := flag.String("lua", "", "an Argo CD health check script to run on each object (as resource.customizations.health.<group>_<kind>)")
	flag.Parse()
	if err := run(*script, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "health-check:", err)
		os.Exit(1)
	}
}

func run(scriptPath string, in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	objects, err := decode(data)
	if err != nil {
		return err
	}
	var script string
	if scriptPath != "" {
		bytes, err := os.ReadFile(scriptPath)
		if err != nil {
			return err
		}
		script = string(bytes)
	}
	encoder := json.NewEncoder(out)
	for _, object := range objects {
		result, err := status.Compute(object)
		if err != nil {
			return fmt.Errorf("kstatus of %s: %w", object.GetName(), err)
		}
		v := verdict{
			Name:           object.GetName(),
			Kstatus:        string(result.Status),
			KstatusMessage: result.Message,
		}
		if script != "" {
			v.ArgoCD, v.ArgoCDMessage, err = argoHealth(script, object.Object)
			if err != nil {
				return fmt.Errorf("health script on %s: %w", object.GetName(), err)
			}
		}
		if err := encoder.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

// decode reads one object or a List of them (`items`), with integers kept
// as int64 as the API machinery (and so kstatus) expects.
func decode(data []byte) ([]*unstructured.Unstructured, error) {
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("reading the input: %w", err)
	}
	raws := list.Items
	if raws == nil {
		raws = []json.RawMessage{data}
	}
	objects := make([]*unstructured.Unstructured, 0, len(raws))
	for _, raw := range raws {
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("reading an object: %w", err)
		}
		objects = append(objects, object)
	}
	return objects, nil
}

// argoHealth runs a health script as Argo CD does: the object as the
// global `obj`, the script's returned table read for `status` and
// `message`.
func argoHealth(script string, object map[string]any) (string, string, error) {
	state := lua.NewState()
	defer state.Close()
	state.SetGlobal("obj", toLua(state, object))
	if err := state.DoString(script); err != nil {
		return "", "", err
	}
	returned, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returned %s, not a table", state.Get(-1).Type())
	}
	return lua.LVAsString(returned.RawGetString("status")), lua.LVAsString(returned.RawGetString("message")), nil
}

func toLua(state *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		table := state.NewTable()
		for i, item := range v {
			table.RawSetInt(i+1, toLua(state, item))
		}
		return table
	case map[string]any:
		table := state.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	default:
		return lua.LString(fmt.Sprint(v))
	}
}
