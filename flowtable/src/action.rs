//! Resolved decisions: what the dataplane does with a packet, step by step.
//!
//! A [`Decision`] is what the pipeline hands the dataplane and what the flow cache stores. Its
//! steps are concrete: the `normal` and `route` actions of rules are already resolved into
//! outputs and rewrites, so executing a decision needs no table lookup (except the port list of
//! a flood).

use std::sync::Arc;

use crate::port::{EgressTag, PortId};
use crate::wire::EthernetAddress;

/// One step of a decision, executed in order; each output sends the packet as modified so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send out of `port`, with the tag made to match `tag` (`None`: leave the tag as is).
    Output {
        /// The output port.
        port: PortId,
        /// The tag the frame must carry there, for outputs the L2 pipeline chose.
        tag: Option<EgressTag>,
    },
    /// Send out of every port of internal VLAN `vlan` except `except`, tagged as each port
    /// wants.
    Flood {
        /// The internal VLAN.
        vlan: u16,
        /// The ingress port.
        except: PortId,
    },
    /// Send out of every port except `except`, as is (OpenFlow's `flood`).
    FloodAll {
        /// The ingress port.
        except: PortId,
    },
    /// Rewrite the source MAC.
    SetEthSrc(EthernetAddress),
    /// Rewrite the destination MAC.
    SetEthDst(EthernetAddress),
    /// Set the VID of the tag, adding a tag if there is none.
    SetVlanVid(u16),
    /// Remove the outer tag if there is one.
    StripVlan,
    /// Add a tag with this VID in front of any existing one.
    PushVlan(u16),
    /// Decrement the IPv4 TTL (updating the checksum) or IPv6 hop limit; drop at 1 or less.
    DecTtl,
    /// Turn an ARP request for a router address into the reply from this MAC.
    ArpReply(EthernetAddress),
    /// Turn an ICMP/ICMPv6 echo request to a router address into the reply from this MAC.
    EchoReply(EthernetAddress),
    /// Turn a neighbor solicitation for a router address into the advertisement of this MAC
    /// (the executor checks that the solicited target is a router address).
    NeighborAdvert(EthernetAddress),
    /// Rewrite the IPv4 or IPv6 source address (mod_nw_src, set_field ->ipv6_src); a family
    /// that does not match the packet's is a no-op.
    SetIpSrc(core::net::IpAddr),
    /// Rewrite the destination address.
    SetIpDst(core::net::IpAddr),
    /// Rewrite the TCP/UDP/SCTP-less (TCP and UDP only) source port.
    SetTpSrc(u16),
    /// Rewrite the TCP/UDP destination port.
    SetTpDst(u16),
    /// Set the DSCP (the top six bits of the IPv4 TOS / IPv6 traffic class), value 0..=63.
    SetIpDscp(u8),
    /// Set the ECN bits (the low two), value 0..=3.
    SetIpEcn(u8),
    /// Set the IPv4 TTL / IPv6 hop limit.
    SetIpTtl(u8),
}

/// Why a packet was dropped. Counted per cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The frame could not be parsed as Ethernet.
    Malformed,
    /// The ingress port does not accept the frame's VLAN.
    VlanFiltered,
    /// The destination is on the ingress port.
    SamePort,
    /// A rule said drop (or gave no output).
    Rule,
    /// No route to the destination.
    NoRoute,
    /// TTL or hop limit ran out.
    TtlExceeded,
    /// The next hop's MAC is not resolved yet (the packet could not be queued).
    NoNeighbor,
    /// Addressed to the router itself and consumed there (ARP and ND replies, other traffic
    /// to a router address).
    ToRouter,
    /// The source MAC is no host's (zero, multicast or broadcast): dropped before any rule,
    /// as the Linux bridge does, and never learned.
    InvalidSource,
    /// The source MAC is not one the port is locked to.
    MacLock,
    /// A new source past the port's MAC limit.
    MacLimit,
    /// A broadcast or multicast frame past the port's storm limit, or on a port the loop
    /// guard blocked.
    Storm,
}

impl DropReason {
    /// Every reason, for tables of counters.
    pub const ALL: [DropReason; 12] = [
        DropReason::Malformed,
        DropReason::VlanFiltered,
        DropReason::SamePort,
        DropReason::Rule,
        DropReason::NoRoute,
        DropReason::TtlExceeded,
        DropReason::NoNeighbor,
        DropReason::ToRouter,
        DropReason::InvalidSource,
        DropReason::MacLock,
        DropReason::MacLimit,
        DropReason::Storm,
    ];

    /// A short stable name, used in counters and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::VlanFiltered => "vlan_filtered",
            DropReason::SamePort => "same_port",
            DropReason::Rule => "rule",
            DropReason::NoRoute => "no_route",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::NoNeighbor => "no_neighbor",
            DropReason::ToRouter => "to_router",
            DropReason::InvalidSource => "invalid_source",
            DropReason::MacLock => "mac_lock",
            DropReason::MacLimit => "mac_limit",
            DropReason::Storm => "storm",
        }
    }
}

const INLINE_STEPS: usize = 4;
const FILLER: Step = Step::StripVlan;

/// The steps of a decision: a few inline, more on the heap (built on the slow path only).
#[derive(Debug, Clone)]
enum Steps {
    Inline(u8, [Step; INLINE_STEPS]),
    Shared(Arc<[Step]>),
}

const INLINE_RULES: usize = 3;

/// The ids of the rules a decision went through, in the order met (one per table visited).
#[derive(Debug, Clone)]
enum Rules {
    Inline(u8, [u32; INLINE_RULES]),
    Shared(Arc<[u32]>),
}

/// A resolved decision for one flow.
#[derive(Debug, Clone)]
pub struct Decision {
    steps: Steps,
    drop: Option<DropReason>,
    rules: Rules,
}

impl Decision {
    /// A decision that drops, for `reason`.
    pub fn drop(reason: DropReason) -> Decision {
        Decision {
            steps: Steps::Inline(0, [FILLER; INLINE_STEPS]),
            drop: Some(reason),
            rules: Rules::Inline(0, [0; INLINE_RULES]),
        }
    }

    /// A decision of these steps. Without an output step the packet is dropped, counted as
    /// [`DropReason::Rule`].
    pub fn from_steps(steps: &[Step]) -> Decision {
        let has_output = steps.iter().any(|s| {
            matches!(
                s,
                Step::Output { .. } | Step::Flood { .. } | Step::FloodAll { .. }
            )
        });
        let stored = if steps.len() <= INLINE_STEPS {
            let mut inline = [FILLER; INLINE_STEPS];
            inline[..steps.len()].copy_from_slice(steps);
            Steps::Inline(steps.len() as u8, inline)
        } else {
            Steps::Shared(steps.into())
        };
        Decision {
            steps: stored,
            drop: (!has_output).then_some(DropReason::Rule),
            rules: Rules::Inline(0, [0; INLINE_RULES]),
        }
    }

    /// A decision that sends to one port.
    pub fn output(port: PortId, tag: Option<EgressTag>) -> Decision {
        Decision::from_steps(&[Step::Output { port, tag }])
    }

    /// Records the rule that made this decision (for its counters).
    pub fn with_rule(self, rule: Option<u32>) -> Decision {
        self.with_rules(rule.as_slice())
    }

    /// Records the rules this decision went through, one per table (for their counters).
    pub fn with_rules(mut self, rules: &[u32]) -> Decision {
        self.rules = if rules.len() <= INLINE_RULES {
            let mut inline = [0; INLINE_RULES];
            inline[..rules.len()].copy_from_slice(rules);
            Rules::Inline(rules.len() as u8, inline)
        } else {
            Rules::Shared(rules.into())
        };
        self
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        match &self.steps {
            Steps::Inline(len, steps) => &steps[..usize::from(*len)],
            Steps::Shared(steps) => steps,
        }
    }

    /// Why the packet is dropped, if it is.
    pub fn drop_reason(&self) -> Option<DropReason> {
        self.drop
    }

    /// The id of the first rule that decided (table 0's), if a rule did.
    pub fn rule(&self) -> Option<u32> {
        self.rules().first().copied()
    }

    /// Every rule the decision went through, in the order met; each counts the packet.
    pub fn rules(&self) -> &[u32] {
        match &self.rules {
            Rules::Inline(len, ids) => &ids[..usize::from(*len)],
            Rules::Shared(ids) => ids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_shared_steps() {
        let one = Decision::output(3, None);
        assert_eq!(one.steps(), &[Step::Output { port: 3, tag: None }]);
        assert_eq!(one.drop_reason(), None);
        let many: Vec<Step> = (0..6)
            .map(|p| Step::Output { port: p, tag: None })
            .collect();
        assert_eq!(Decision::from_steps(&many).steps(), &many[..]);
        assert_eq!(
            Decision::from_steps(&[Step::DecTtl]).drop_reason(),
            Some(DropReason::Rule)
        );
        assert_eq!(
            Decision::drop(DropReason::NoRoute).drop_reason(),
            Some(DropReason::NoRoute)
        );
    }
}
