//! Consumer groups over the Kafka protocol (the classic protocol), on the
//! broker's coordinator (`broker::groups`): JoinGroup and SyncGroup (which
//! wait in the broker, like long-poll fetches, until the rebalance lets
//! them answer), Heartbeat, LeaveGroup, DescribeGroups, ListGroups; and
//! DeleteTopics.

use super::api::delete_topics::{DeletableTopicResult, DeleteTopicsRequest, DeleteTopicsResponse};
use super::api::describe_groups::{
    DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use super::api::heartbeat::{HeartbeatRequest, HeartbeatResponse};
use super::api::join_group::{JoinGroupMember, JoinGroupRequest, JoinGroupResponse};
use super::api::leave_group::{LeaveGroupMemberResponse, LeaveGroupRequest, LeaveGroupResponse};
use super::api::list_groups::{ListGroupsRequest, ListGroupsResponse, ListedGroup};
use super::api::sync_group::{SyncGroupRequest, SyncGroupResponse};
use super::error::ErrorCode;
use super::frame::encode_response;
use super::header::RequestHeader;
use crate::broker::TopicError;
use crate::broker::groups::{GroupError, GroupEvent, Join, JoinResult};
use crate::protocol::{Control, Ctx};
use crate::util::is_valid_name;

/// A JoinGroup or SyncGroup waiting in the broker.
#[derive(Debug, Clone, Copy)]
pub struct ParkedGroup {
    correlation_id: i32,
    version: i16,
    header_version: i16,
    sync: bool,
}

/// Kafka's error code for a group refusal.
pub fn error_code(e: GroupError) -> ErrorCode {
    match e {
        GroupError::UnknownMember => ErrorCode::UNKNOWN_MEMBER_ID,
        GroupError::IllegalGeneration => ErrorCode::ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => ErrorCode::REBALANCE_IN_PROGRESS,
        GroupError::InconsistentProtocol => ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
        GroupError::MemberIdRequired => ErrorCode::MEMBER_ID_REQUIRED,
        GroupError::GroupFull => ErrorCode::GROUP_MAX_SIZE_REACHED,
        GroupError::TooManyGroups => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        GroupError::InvalidSessionTimeout => ErrorCode::INVALID_SESSION_TIMEOUT,
    }
}

fn write_join(out: &mut Vec<u8>, p: ParkedGroup, r: &JoinResult) {
    let resp = JoinGroupResponse {
        throttle_time_ms: 0,
        error_code: r.error.map_or(ErrorCode::NONE, error_code),
        generation_id: r.generation,
        protocol_name: &r.protocol,
        leader: &r.leader,
        member_id: &r.member_id,
        members: r
            .members
            .iter()
            .map(|(id, md)| JoinGroupMember {
                member_id: id,
                group_instance_id: None,
                metadata: md,
            })
            .collect(),
    };
    encode_response(out, p.correlation_id, p.header_version, |w| {
        resp.encode(p.version, w)
    });
}

fn join_error(out: &mut Vec<u8>, p: ParkedGroup, code: ErrorCode, member_id: &str) {
    let resp = JoinGroupResponse {
        throttle_time_ms: 0,
        error_code: code,
        generation_id: -1,
        protocol_name: "",
        leader: "",
        member_id,
        members: Vec::new(),
    };
    encode_response(out, p.correlation_id, p.header_version, |w| {
        resp.encode(p.version, w)
    });
}

fn write_sync(out: &mut Vec<u8>, p: ParkedGroup, result: Result<&[u8], GroupError>) {
    let (code, assignment) = match result {
        Ok(a) => (ErrorCode::NONE, a),
        Err(e) => (error_code(e), &[][..]),
    };
    let resp = SyncGroupResponse {
        throttle_time_ms: 0,
        error_code: code,
        assignment,
    };
    encode_response(out, p.correlation_id, p.header_version, |w| {
        resp.encode(p.version, w)
    });
}

fn parked(header: &RequestHeader<'_>, sync: bool) -> ParkedGroup {
    ParkedGroup {
        correlation_id: header.correlation_id,
        version: header.api_version,
        header_version: header.response_header_version(),
        sync,
    }
}

pub fn join(
    ctx: &mut Ctx<'_>,
    header: &RequestHeader<'_>,
    r: &JoinGroupRequest<'_>,
    waiting: &mut Option<ParkedGroup>,
) -> Control {
    let p = parked(header, false);
    if !is_valid_name(r.group_id.as_bytes()) {
        join_error(
            ctx.out.buf_mut(),
            p,
            ErrorCode::INVALID_GROUP_ID,
            r.member_id,
        );
        return Control::Continue;
    }
    let client_host = format!("/{}", ctx.peer.ip());
    let j = Join {
        group: r.group_id,
        member_id: r.member_id,
        client_id: header.client_id.unwrap_or(""),
        client_host: &client_host,
        session_ms: r.session_timeout_ms,
        rebalance_ms: r.rebalance_timeout_ms,
        protocol_type: r.protocol_type,
        protocols: r
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
        require_known_id: header.api_version >= 4,
    };
    match ctx.broker.join_group(&j, ctx.conn) {
        Ok(Some(result)) => write_join(ctx.out.buf_mut(), p, &result),
        Ok(None) => {
            *waiting = Some(p);
            return Control::Park;
        }
        Err(e) => join_error(ctx.out.buf_mut(), p, error_code(e), r.member_id),
    }
    Control::Continue
}

pub fn sync(
    ctx: &mut Ctx<'_>,
    header: &RequestHeader<'_>,
    r: &SyncGroupRequest<'_>,
    waiting: &mut Option<ParkedGroup>,
) -> Control {
    let p = parked(header, true);
    let assignments = r
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
        .collect();
    match ctx.broker.sync_group(
        r.group_id,
        r.generation_id,
        r.member_id,
        assignments,
        ctx.conn,
    ) {
        Ok(Some(assignment)) => write_sync(ctx.out.buf_mut(), p, Ok(&assignment)),
        Ok(None) => {
            *waiting = Some(p);
            return Control::Park;
        }
        Err(e) => write_sync(ctx.out.buf_mut(), p, Err(e)),
    }
    Control::Continue
}

/// A group answer arrived for a connection with a join or sync waiting.
/// Returns whether it answered (the connection reads again).
pub fn on_wake(ctx: &mut Ctx<'_>, waiting: &mut Option<ParkedGroup>) -> bool {
    let events = ctx.broker.take_group_events(ctx.conn);
    let Some(p) = *waiting else {
        return false;
    };
    for event in events {
        match (event, p.sync) {
            (GroupEvent::Joined(result), false) => {
                write_join(ctx.out.buf_mut(), p, &result);
                *waiting = None;
                return true;
            }
            (GroupEvent::Synced(result), true) => {
                write_sync(ctx.out.buf_mut(), p, result.as_deref().map_err(|e| *e));
                *waiting = None;
                return true;
            }
            _ => {}
        }
    }
    false
}

pub fn heartbeat(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &HeartbeatRequest<'_>) {
    let code = match ctx
        .broker
        .heartbeat_group(r.group_id, r.generation_id, r.member_id)
    {
        Ok(()) => ErrorCode::NONE,
        Err(e) => error_code(e),
    };
    let resp = HeartbeatResponse {
        throttle_time_ms: 0,
        error_code: code,
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}

pub fn leave(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &LeaveGroupRequest<'_>) {
    let ids: Vec<&str> = r.members.iter().map(|m| m.member_id).collect();
    let results = ctx.broker.leave_group(r.group_id, &ids);
    let members: Vec<LeaveGroupMemberResponse<'_>> = r
        .members
        .iter()
        .zip(&results)
        .map(|(m, res)| LeaveGroupMemberResponse {
            member_id: m.member_id,
            group_instance_id: m.group_instance_id,
            error_code: res.map_or_else(error_code, |()| ErrorCode::NONE),
        })
        .collect();
    // v0-2 answer for their one member; v3+ per member.
    let top = if header.api_version < 3 {
        members.first().map_or(ErrorCode::NONE, |m| m.error_code)
    } else {
        ErrorCode::NONE
    };
    let resp = LeaveGroupResponse {
        throttle_time_ms: 0,
        error_code: top,
        members,
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}

pub fn describe(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &DescribeGroupsRequest<'_>) {
    let infos: Vec<_> = r
        .groups
        .iter()
        .map(|g| (*g, ctx.broker.describe_group(g)))
        .collect();
    let groups = infos
        .iter()
        .map(|(name, info)| match info {
            Some(info) => DescribedGroup {
                error_code: ErrorCode::NONE,
                group_id: name,
                group_state: info.phase.name(),
                protocol_type: &info.protocol_type,
                protocol_data: &info.protocol,
                members: info
                    .members
                    .iter()
                    .map(|m| DescribedGroupMember {
                        member_id: &m.id,
                        group_instance_id: None,
                        client_id: &m.client_id,
                        client_host: &m.client_host,
                        member_metadata: &m.metadata,
                        member_assignment: &m.assignment,
                    })
                    .collect(),
                authorized_operations: i32::MIN,
            },
            // A group nobody is in (perhaps with commits): "Dead" or
            // "Empty" as Kafka says.
            None => DescribedGroup {
                error_code: ErrorCode::NONE,
                group_id: name,
                group_state: if ctx.broker.list_groups().iter().any(|(n, _)| n == name) {
                    "Empty"
                } else {
                    "Dead"
                },
                protocol_type: "",
                protocol_data: "",
                members: Vec::new(),
                authorized_operations: i32::MIN,
            },
        })
        .collect();
    let resp = DescribeGroupsResponse {
        throttle_time_ms: 0,
        groups,
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}

pub fn list(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, _r: &ListGroupsRequest) {
    let all = ctx.broker.list_groups();
    let resp = ListGroupsResponse {
        throttle_time_ms: 0,
        error_code: ErrorCode::NONE,
        groups: all
            .iter()
            .map(|(name, protocol_type)| ListedGroup {
                group_id: name,
                protocol_type: if protocol_type.is_empty() {
                    "consumer"
                } else {
                    protocol_type
                },
            })
            .collect(),
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}

pub fn delete_topics(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &DeleteTopicsRequest<'_>) {
    let responses = r
        .topic_names
        .iter()
        .map(|name| DeletableTopicResult {
            name,
            error_code: match ctx.broker.delete_topic(name.as_bytes()) {
                Ok(()) => ErrorCode::NONE,
                Err(TopicError::Unknown) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                Err(TopicError::Invalid) => ErrorCode::INVALID_TOPIC_EXCEPTION,
                Err(_) => ErrorCode::KAFKA_STORAGE_ERROR,
            },
        })
        .collect();
    let resp = DeleteTopicsResponse {
        throttle_time_ms: 0,
        responses,
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}

/// Why a commit of `group` by this member must be refused, if it must.
pub fn check_commit(
    ctx: &mut Ctx<'_>,
    group: &str,
    generation: i32,
    member: &str,
) -> Option<ErrorCode> {
    ctx.broker
        .check_group_commit(group, generation, member)
        .err()
        .map(error_code)
}
