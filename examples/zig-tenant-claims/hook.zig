//! tenant-claims in Zig, written from docs/hook-abi.md alone: a core wasm
//! module (wasm32-freestanding) implementing hook contract v1 without the
//! Rust SDK. It does what examples/tenant-claims does: the caller's tenant and
//! plan, from its client metadata, become claims under the namespace in the
//! hook's config (default `https://example.com/`), and a client on the `free`
//! plan loses every `write:` scope.
//!
//! Build: ./build.sh [OUT.wasm] (needs zig; see README.md).

const std = @import("std");

/// The one import the contract allows: level 0 debug, 1 info, 2 warn, 3 error.
extern "tokenhook" fn log(level: i32, ptr: [*]const u8, len: usize) void;

/// Every call runs in a fresh instance that is thrown away afterwards, so
/// nothing is ever freed: wasm_allocator grows linear memory as needed.
const gpa = std.heap.wasm_allocator;

/// The version marker: exported, never called.
export fn tokenhook_abi_v1() void {}

/// Reserve `len` bytes for the event. The contract has no way to report a
/// failed allocation, so the module traps (the host reports `trap`).
export fn tokenhook_alloc(len: u32) u32 {
    const buf = gpa.alloc(u8, len) catch @trap();
    return @intCast(@intFromPtr(buf.ptr));
}

/// Run the hook on the event at `ptr[0..len]`; the output's pointer goes in
/// the high 32 bits of the result, its length in the low 32.
export fn tokenhook_run(ptr: u32, len: u32) u64 {
    const input = @as([*]const u8, @ptrFromInt(ptr))[0..len];
    const output = run(input) catch |err| failure(err);
    return (@as(u64, @intFromPtr(output.ptr)) << 32) | @as(u64, output.len);
}

/// The part of the event this hook reads; readers ignore the rest.
const Event = struct {
    client: struct {
        metadata: std.json.ArrayHashMap([]const u8) = .{},
    },
    token: struct {
        scopes: []const []const u8 = &.{},
    },
    config: std.json.Value = .null,
};

const default_namespace = "https://example.com/";

fn run(input: []const u8) ![]const u8 {
    const event = try std.json.parseFromSliceLeaky(Event, gpa, input, .{
        .ignore_unknown_fields = true,
    });
    const namespace = switch (event.config) {
        .object => |config| if (config.get("namespace")) |ns| switch (ns) {
            .string => |s| s,
            else => return error.NamespaceIsNotAString,
        } else default_namespace,
        else => default_namespace,
    };

    var out: std.Io.Writer.Allocating = .init(gpa);
    var json: std.json.Stringify = .{ .writer = &out.writer };
    try json.beginObject();
    try json.objectField("commands");
    try json.beginArray();
    const metadata = event.client.metadata.map;
    if (metadata.get("tenant")) |tenant| {
        try setClaim(&json, namespace, "tenant", tenant);
    }
    if (metadata.get("plan")) |plan| {
        try setClaim(&json, namespace, "plan", plan);
        if (std.mem.eql(u8, plan, "free")) {
            for (event.token.scopes) |scope| {
                if (!std.mem.startsWith(u8, scope, "write:")) continue;
                const line = try std.mem.concat(gpa, u8, &.{ "free plan: removing ", scope });
                log(1, line.ptr, line.len);
                try json.beginObject();
                try json.objectField("remove_scope");
                try json.write(scope);
                try json.endObject();
            }
        }
    }
    try json.endArray();
    try json.endObject();
    return out.written();
}

fn setClaim(json: *std.json.Stringify, namespace: []const u8, name: []const u8, value: []const u8) !void {
    try json.beginObject();
    try json.objectField("set_claim");
    try json.beginObject();
    try json.objectField("name");
    try json.write(try std.mem.concat(gpa, u8, &.{ namespace, name }));
    try json.objectField("value");
    try json.write(value);
    try json.endObject();
    try json.endObject();
}

/// The hook's own failure, `{"error": {"message": …}}`: the host reports it
/// as `hook_error` and applies the hook's `on_error`.
fn failure(err: anyerror) []const u8 {
    const message = std.mem.concat(gpa, u8, &.{
        "{\"error\":{\"message\":\"tenant-claims (zig): ",
        @errorName(err),
        "\"}}",
    }) catch @trap();
    return message;
}
