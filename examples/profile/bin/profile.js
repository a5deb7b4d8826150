#!/usr/bin/env node
import '../dist/profile.js';
