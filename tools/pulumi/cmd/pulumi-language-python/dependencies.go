package main

// What a pip + virtualenv project needs besides running the program: installing its dependencies
// (`pulumi install`, the Automation API's install), reporting the Pulumi packages it uses, so the engine
// knows which resource plugins to load or acquire, and describing the runtime (`pulumi about`).
// The venv and pip work is done by the SDK's own python/toolchain package.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// packagesWithoutPlugins are Pulumi Python packages known to have no resource plugin.
var packagesWithoutPlugins = map[string]bool{"pulumi-policy": true, "pulumi-esc-sdk": true}

var plainVersion = regexp.MustCompile(`^\d+(\.\d+){0,2}$`)

// listPulumiPackages prints one JSON line per installed distribution that is a Pulumi package: named
// pulumi-* or shipping a pulumi-plugin.json next to its top-level module.
const listPulumiPackages = `
import importlib.metadata as md, json
for d in md.distributions():
    name = (d.metadata["Name"] or "").lower().replace("_", "-")
    files = [f for f in (d.files or ()) if f.name == "pulumi-plugin.json" and len(f.parts) == 2]
    if files or name.startswith("pulumi-"):
        print(json.dumps({"name": name, "version": d.version, "plugin": str(d.locate_file(files[0])) if files else ""}))
`

type pythonPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Plugin  string `json:"plugin"` // path of its pulumi-plugin.json, empty when it has none
}

// toolchainFor resolves the pip toolchain of the program's Pulumi.yaml runtime options.
func toolchainFor(info *pulumirpc.ProgramInfo) (toolchain.Toolchain, error) {
	opts := toolchain.PythonOptions{
		Root: info.GetRootDirectory(), ProgramDir: info.GetProgramDirectory(), Toolchain: toolchain.Pip,
	}
	if fields := info.GetOptions().GetFields(); fields != nil {
		opts.Virtualenv = fields["virtualenv"].GetStringValue()
		if tc := fields["toolchain"].GetStringValue(); tc != "" && tc != "pip" {
			return nil, status.Errorf(codes.InvalidArgument,
				"Pulumi.yaml runtime option toolchain: %s is not supported by this language host; use toolchain: pip", tc)
		}
	}
	return toolchain.ResolveToolchain(opts)
}

// readyToolchain is toolchainFor with an existing virtualenv.
func readyToolchain(ctx context.Context, info *pulumirpc.ProgramInfo) (toolchain.Toolchain, error) {
	tc, err := toolchainFor(info)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v; run `pulumi install` (or `make venv`) to create it", err)
	}
	return tc, nil
}

// streamWriter sends what it is given to the engine as one stream of install output; pip's stdout and stderr
// are copied by two goroutines, and a gRPC stream must not be sent to concurrently.
type streamWriter struct {
	mu     *sync.Mutex
	stream grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]
	stderr bool
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	msg := &pulumirpc.InstallDependenciesResponse{Stdout: p}
	if w.stderr {
		msg = &pulumirpc.InstallDependenciesResponse{Stderr: p}
	}
	if err := w.stream.Send(msg); err != nil {
		return 0, err
	}
	return len(p), nil
}

// InstallDependencies creates the virtualenv named in Pulumi.yaml and pip-installs requirements.txt into it,
// streaming pip's output to the engine.
func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	stream grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	info := req.GetInfo()
	tc, err := toolchainFor(info)
	if err != nil {
		return err
	}
	dir := info.GetProgramDirectory()
	if dir == "" {
		dir = req.GetDirectory()
	}
	mu := &sync.Mutex{}
	var stdout, stderr io.Writer = streamWriter{mu, stream, false}, streamWriter{mu, stream, true}
	if err := tc.InstallDependencies(stream.Context(), dir, req.GetUseLanguageVersionTools(), true, stdout, stderr); err != nil {
		return status.Errorf(codes.Unknown, "installing the Python dependencies failed: %v", err)
	}
	return nil
}

// installedPulumiPackages lists the Pulumi packages installed in the program's virtualenv.
func installedPulumiPackages(ctx context.Context, info *pulumirpc.ProgramInfo) ([]pythonPackage, error) {
	tc, err := readyToolchain(ctx, info)
	if err != nil {
		return nil, err
	}
	cmd, err := tc.Command(ctx, "-c", listPulumiPackages)
	if err != nil {
		return nil, err
	}
	out, err := cmd.Output()
	if err != nil {
		return nil, status.Errorf(codes.Unknown, "listing the installed Pulumi packages with %s failed: %v", cmd.Path, err)
	}
	seen, packages := map[string]bool{}, []pythonPackage{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var pkg pythonPackage
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &pkg); err != nil {
			return nil, status.Errorf(codes.Unknown, "unexpected package listing line %q: %v", line, err)
		}
		if !seen[pkg.Name] && !packagesWithoutPlugins[pkg.Name] {
			seen[pkg.Name] = true
			packages = append(packages, pkg)
		}
	}
	return packages, nil
}

// packageDependency is the resource plugin a Python package needs, or nil when it needs none: its
// pulumi-plugin.json decides (resource, name, version, server); without one, the name and version derive
// from the package's own (pulumi-aws 6.1 needs plugin aws v6.1.0).
func packageDependency(pkg pythonPackage) (*pulumirpc.PackageDependency, error) {
	var meta plugin.PulumiPluginJSON
	if pkg.Plugin != "" {
		loaded, err := plugin.LoadPulumiPluginJSON(pkg.Plugin)
		if err != nil {
			return nil, status.Errorf(codes.Unknown, "reading %s of package %s: %v", pkg.Plugin, pkg.Name, err)
		}
		if !loaded.Resource {
			return nil, nil
		}
		meta = *loaded
	}
	name := meta.Name
	if name == "" {
		name = strings.TrimPrefix(pkg.Name, "pulumi-")
	}
	v := meta.Version
	if v == "" {
		if !plainVersion.MatchString(pkg.Version) {
			return nil, nil // a pre-release or local version: the plugin version cannot be derived from it
		}
		v = padVersion(pkg.Version)
	}
	dep := &pulumirpc.PackageDependency{
		Name: name, Kind: "resource", Version: "v" + strings.TrimPrefix(v, "v"), Server: meta.Server,
	}
	if p := meta.Parameterization; p != nil {
		dep.Parameterization = &pulumirpc.PackageParameterization{Name: p.Name, Version: p.Version, Value: p.Value}
	}
	return dep, nil
}

func padVersion(v string) string {
	for strings.Count(v, ".") < 2 {
		v += ".0"
	}
	return v
}

func requiredPackages(ctx context.Context, info *pulumirpc.ProgramInfo) ([]*pulumirpc.PackageDependency, error) {
	packages, err := installedPulumiPackages(ctx, info)
	if err != nil {
		return nil, err
	}
	var deps []*pulumirpc.PackageDependency
	for _, pkg := range packages {
		dep, err := packageDependency(pkg)
		if err != nil {
			return nil, err
		}
		if dep != nil {
			deps = append(deps, dep)
		}
	}
	return deps, nil
}

// GetRequiredPackages reports the resource plugins of the Pulumi packages installed in the virtualenv.
// The engine installs a missing one unless PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION is set; either way
// a program that registers no resource of a package never loads its plugin.
func (h *host) GetRequiredPackages(ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	deps, err := requiredPackages(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: deps}, nil
}

// GetRequiredPlugins answers the older form of GetRequiredPackages.
func (h *host) GetRequiredPlugins(ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	deps, err := requiredPackages(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	plugins := make([]*pulumirpc.PluginDependency, 0, len(deps))
	for _, d := range deps {
		plugins = append(plugins, &pulumirpc.PluginDependency{Name: d.Name, Kind: d.Kind, Version: d.Version, Server: d.Server})
	}
	return &pulumirpc.GetRequiredPluginsResponse{Plugins: plugins}, nil
}

// GetProgramDependencies lists the packages installed in the virtualenv (`pulumi about`).
func (h *host) GetProgramDependencies(ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	tc, err := readyToolchain(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	packages, err := tc.ListPackages(ctx, req.GetTransitiveDependencies())
	if err != nil {
		return nil, status.Errorf(codes.Unknown, "listing the installed packages failed: %v", err)
	}
	deps := make([]*pulumirpc.DependencyInfo, 0, len(packages))
	for _, p := range packages {
		deps = append(deps, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

// About describes the interpreter of the virtualenv and the toolchain (`pulumi about`).
func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	tc, err := readyToolchain(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	about, err := tc.About(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unknown, "could not run the virtualenv's python: %v", err)
	}
	venv, _ := tc.VirtualEnvPath(ctx)
	metadata := map[string]string{"toolchain": "pip", "pipVersion": about.ToolchainVersion.String()}
	if venv != "" {
		metadata["virtualenv"] = filepath.Clean(venv)
	}
	return &pulumirpc.AboutResponse{
		Executable: about.PythonExecutable, Version: about.PythonVersion.String(), Metadata: metadata,
	}, nil
}

// unsupported is the answer to a LanguageRuntime call this host does not implement.
func unsupported(call, purpose string) error {
	return status.Error(codes.Unimplemented, fmt.Sprintf(
		"the project's pulumi-language-python does not implement %s (%s); use a full Pulumi installation for it",
		call, purpose))
}
