//! The methods xvsd answers, each listed once.
//!
//! Each line gives the type that names the method, its name on the wire, its parameters as
//! `list-commands` describes them, what it does, and its parameter and result types.

use serde_json::Value;

use crate::counters::{DumpPortsParams, DumpPortsResult};
use crate::envelope::RpcError;
use crate::fast_path::{DumpFastPathResult, SetFastPathParams, SetFastPathResult};
use crate::fdb::FdbShowResult;
use crate::flows::{
    AddFlowResult, AddFlowsResult, ConntrackParams, DelFlowsParams, DelFlowsResult,
    DumpConntrackResult, DumpFlowsParams, DumpFlowsResult, FlowParams, FlowsParams,
    FlushConntrackResult, TraceParams, TraceResult,
};
use crate::meta::{CommandInfo, VersionResult};
use crate::method::{Empty, Method, MethodInfo, methods, read_params};
use crate::ports::{AddPortParams, AddPortResult, PortName, SetPortParams};
use crate::router::{
    AddrParams, RouteParams, ShowAddrsResult, ShowNeighborsResult, ShowRoutesResult,
};
use crate::state::DesiredState;
use crate::status::ShowResult;

methods! {
    Version = "version" ("", "daemon and protocol version"): Empty => VersionResult;
    ListCommands = "list-commands" ("", "this list"): Empty => Vec<CommandInfo>;
    Show = "show" ("", "ports, queues, workers, uptime"): Empty => ShowResult;
    ShowConfig = "show-config" ("", "the desired state xvsd keeps, saves and restores"):
        Empty => DesiredState;
    AddPort = "add-port" (
        "name, queues?, hook? (tc|xdp), xdp_mode? (drv|skb), vlan?, external_ids?, mac_lock?, \
         internal? ({addrs, masquerade}), publish? ([{host_port, port, proto, addr}])",
        "switch an interface (hot add), or make an internal one for the host"
    ): AddPortParams => AddPortResult;
    DelPort = "del-port" ("name", "give an interface back to the kernel"): PortName => Empty;
    SetPort = "set-port" (
        "name, vlan?, mac_limit? (0: none), mac_lock? ([MAC]), storm_limit? (pps, 0: none), \
         masquerade?",
        "set a port's VLAN mode, port security, storm limit, masquerade"
    ): SetPortParams => Empty;
    DumpPorts = "dump-ports" ("name?", "per-port and per-worker counters"):
        DumpPortsParams => DumpPortsResult;
    FdbShow = "fdb-show" ("", "the learned MAC table"): Empty => FdbShowResult;
    FdbFlush = "fdb-flush" ("", "forget every learned MAC"): Empty => Empty;
    AddFlow = "add-flow" (
        "flow",
        "add a rule (ovs-ofctl syntax); same match and priority replaces"
    ): FlowParams => AddFlowResult;
    AddFlows = "add-flows" ("flows", "add several rules: all or none"):
        FlowsParams => AddFlowsResult;
    DelFlows = "del-flows" ("match?, strict?", "delete the rules a match covers (all without one)"):
        DelFlowsParams => DelFlowsResult;
    DumpFlows = "dump-flows" ("match?", "the rules with their counters (table=, cookie=V/M filter)"):
        DumpFlowsParams => DumpFlowsResult;
    Trace = "trace" (
        "flow",
        "what the switch does with a packet: tables, rules, conntrack, bridge, router, caching"
    ): TraceParams => TraceResult;
    DumpConntrack = "dump-conntrack" ("zone?", "the tracked connections"):
        ConntrackParams => DumpConntrackResult;
    FlushConntrack = "flush-conntrack" ("zone?", "forget tracked connections"):
        ConntrackParams => FlushConntrackResult;
    AddAddr = "add-addr" (
        "name (port or vlanN), addr (ip/len), mac?",
        "give the switch a router address"
    ): AddrParams => Empty;
    DelAddr = "del-addr" ("name, addr", "remove a router address"): AddrParams => Empty;
    ShowAddrs = "show-addrs" ("", "the router interfaces and their addresses"):
        Empty => ShowAddrsResult;
    AddRoute = "add-route" ("prefix, via", "add a static route"): RouteParams => Empty;
    DelRoute = "del-route" ("prefix", "remove a static route"): RouteParams => Empty;
    ShowRoutes = "show-routes" ("", "connected and static routes"): Empty => ShowRoutesResult;
    ShowNeighbors = "show-neighbors" ("", "the resolved next hops"): Empty => ShowNeighborsResult;
    DumpFastPath = "dump-fast-path" ("", "the flows the kernel forwards"):
        Empty => DumpFastPathResult;
    SetFastPath = "set-fast-path" ("on", "turn the in-kernel fast path on or off"):
        SetFastPathParams => SetFastPathResult;
}

#[cfg(test)]
mod tests;
