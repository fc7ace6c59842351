"""Publish a fresh list for every user who had events since the last tick (debounced)."""

from __future__ import annotations

from agents import worker_pipeline
from stream.app import app
from stream.contracts import encode_recommendation_list
from stream.settings import get_settings
from stream.topics import recommendations_topic


@app.timer(interval=get_settings().publish_interval_ms / 1000)
async def publish_recommendations() -> None:
    pipeline = worker_pipeline()
    for user_id in pipeline.take_dirty():
        recommendations = pipeline.recommend(user_id)
        # (user_id, RecommendationList)
        await recommendations_topic.send(
            key=user_id.encode(), value=encode_recommendation_list(recommendations)
        )
