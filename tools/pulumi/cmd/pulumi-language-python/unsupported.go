package main

// The LanguageRuntime calls this host does not implement. Each answers codes.Unimplemented (which the engine
// treats as an older host where it can) with a message that names the call and what it is for; a call added to
// the protocol later falls through to the embedded UnimplementedLanguageRuntimeServer, which answers the same code.

import (
	"context"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

func (h *host) RuntimeOptionsPrompts(context.Context, *pulumirpc.RuntimeOptionsRequest) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil // no questions to ask: the project uses pip and a virtualenv
}

func (h *host) Template(context.Context, *pulumirpc.TemplateRequest) (*pulumirpc.TemplateResponse, error) {
	return nil, unsupported("Template", "preparing a project from a template, `pulumi new`")
}

func (h *host) RunPlugin(*pulumirpc.RunPluginRequest, grpc.ServerStreamingServer[pulumirpc.RunPluginResponse]) error {
	return unsupported("RunPlugin", "running a provider plugin written in Python")
}

func (h *host) GenerateProgram(context.Context, *pulumirpc.GenerateProgramRequest) (*pulumirpc.GenerateProgramResponse, error) {
	return nil, unsupported("GenerateProgram", "`pulumi convert` and `pulumi import --out`")
}

func (h *host) GenerateProject(context.Context, *pulumirpc.GenerateProjectRequest) (*pulumirpc.GenerateProjectResponse, error) {
	return nil, unsupported("GenerateProject", "`pulumi convert`")
}

func (h *host) GeneratePackage(context.Context, *pulumirpc.GeneratePackageRequest) (*pulumirpc.GeneratePackageResponse, error) {
	return nil, unsupported("GeneratePackage", "generating an SDK, `pulumi package gen-sdk` and `pulumi package add`")
}

func (h *host) Pack(context.Context, *pulumirpc.PackRequest) (*pulumirpc.PackResponse, error) {
	return nil, unsupported("Pack", "building a generated SDK into a wheel")
}

func (h *host) Link(context.Context, *pulumirpc.LinkRequest) (*pulumirpc.LinkResponse, error) {
	return nil, unsupported("Link", "adding a local SDK to requirements.txt, `pulumi package add`")
}

// Cancel has nothing to stop: a running program ends with the context of its Run call.
func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}
