// argocd-lua runs an Argo CD resource health script the way Argo CD does: with gopher-lua
// (the Lua 5.1 interpreter Argo CD embeds), only the libraries Argo CD opens for health
// checks (package, base, table), the resource as the global `obj` (JSON objects become
// tables, nulls are dropped), and a one-second deadline. It prints the table the script
// returns as JSON: {"status": ..., "message": ...}.
//
// Usage: argocd-lua SCRIPT.lua < OBJECT.json
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func decode(l *lua.LState, v interface{}) lua.LValue {
	switch v := v.(type) {
	case map[string]interface{}:
		t := l.NewTable()
		for k, item := range v {
			if item != nil {
				t.RawSetString(k, decode(l, item))
			}
		}
		return t
	case []interface{}:
		t := l.NewTable()
		for _, item := range v {
			t.Append(decode(l, item))
		}
		return t
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: argocd-lua SCRIPT.lua < OBJECT.json")
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var obj map[string]interface{}
	if err := json.NewDecoder(os.Stdin).Decode(&obj); err != nil {
		fail("object: %v", err)
	}

	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			fail("opening %s: %v", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decode(l, obj))
	if err := l.DoString(string(script)); err != nil {
		fail("script: %v", err)
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		fail("the script returned %s, not a table", l.Get(-1).Type())
	}
	out := map[string]string{}
	for _, key := range []string{"status", "message"} {
		if v := table.RawGetString(key); v != lua.LNil {
			out[key] = v.String()
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("%v", err)
	}
}
