"""Publish a fresh list for every user who had events since the last tick (debounced)."""

from __future__ import annotations

from agents import worker_pipeline
from stream.app import app
from stream.contracts import encode_recommendation_list
from stream.settings import get_settings
from stream.topics import recommendations_topic


async def publish_dirty_lists() -> int:
    """One tick: a list for each user with new events, however many they had. Returns how many."""
    pipeline = worker_pipeline()
    users = pipeline.take_dirty()
    for user_id in users:
        recommendations = pipeline.recommend(user_id)
        # (user_id, RecommendationList)
        await recommendations_topic.send(
            key=user_id.encode(), value=encode_recommendation_list(recommendations)
        )
    return len(users)


publish_recommendations = app.timer(
    interval=get_settings().publish_interval_ms / 1000, name="publish_recommendations"
)(publish_dirty_lists)
