#!/bin/bash
grep -qx ok /app/built
