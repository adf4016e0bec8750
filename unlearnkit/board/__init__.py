"""The board: reads finished runs from the store, aggregates them over seeds (:mod:`.leaderboard`),
renders tables and plots (:mod:`.tables`, :mod:`.plots`) and keeps a board in the store (:mod:`.publish`)."""
