//! Consumer groups over the Kafka protocol (the classic protocol):
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups,
//! ListGroups, and the commit checks; plus DeleteTopics.

use super::api::delete_topics::{DeletableTopicResult, DeleteTopicsRequest, DeleteTopicsResponse};
use super::api::describe_groups::DescribeGroupsRequest;
use super::api::heartbeat::HeartbeatRequest;
use super::api::join_group::JoinGroupRequest;
use super::api::leave_group::LeaveGroupRequest;
use super::api::list_groups::ListGroupsRequest;
use super::api::sync_group::SyncGroupRequest;
use super::error::ErrorCode;
use super::header::RequestHeader;
use crate::protocol::{Control, Ctx};

pub fn join(_ctx: &mut Ctx<'_>, _header: &RequestHeader<'_>, _r: &JoinGroupRequest<'_>) -> Control {
    Control::Quit
}

pub fn sync(_ctx: &mut Ctx<'_>, _header: &RequestHeader<'_>, _r: &SyncGroupRequest<'_>) -> Control {
    Control::Quit
}

pub fn heartbeat(_ctx: &mut Ctx<'_>, _header: &RequestHeader<'_>, _r: &HeartbeatRequest<'_>) {}

pub fn leave(_ctx: &mut Ctx<'_>, _header: &RequestHeader<'_>, _r: &LeaveGroupRequest<'_>) {}

pub fn describe(_ctx: &mut Ctx<'_>, _header: &RequestHeader<'_>, _r: &DescribeGroupsRequest<'_>) {}

pub fn list(_ctx: &mut Ctx<'_>, _header: &RequestHeader<'_>, _r: &ListGroupsRequest) {}

pub fn delete_topics(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &DeleteTopicsRequest<'_>) {
    let resp = DeleteTopicsResponse {
        throttle_time_ms: 0,
        responses: r
            .topic_names
            .iter()
            .map(|name| DeletableTopicResult {
                name,
                error_code: ErrorCode::TOPIC_DELETION_DISABLED,
            })
            .collect(),
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}

/// Why a commit of `group` by this member must be refused, if it must.
pub fn check_commit(
    _ctx: &mut Ctx<'_>,
    _group: &str,
    _generation: i32,
    _member: &str,
) -> Option<ErrorCode> {
    None
}

pub fn on_wake(_ctx: &mut Ctx<'_>) -> bool {
    false
}

pub fn connection_closed(_ctx: &mut Ctx<'_>) {}
